"""Freed heap memory goes back to the system now and then (glibc's malloc_trim).

The operator's live Python heap is small next to its resident memory: traced with tracemalloc at 100 new
ScaledApps it held 65 MiB, a third of it code, while bursts of watch events and API answers (decoded JSON) come
and go. glibc keeps the pages those bursts freed, so the resident size stayed at its high-water mark
(bench/results/scale.md). Where the C library is not glibc this does nothing.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
from collections.abc import Callable
from typing import cast

TRIM_SECONDS = 30.0


def _trim_function() -> Callable[[int], int] | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return cast(Callable[[int], int], libc.malloc_trim)
    except (OSError, AttributeError):  # not glibc (musl, macOS)
        return None


_MALLOC_TRIM = _trim_function()


def trim() -> bool:
    """Give the free pages of every malloc arena back to the system; True when some were given back."""
    return bool(_MALLOC_TRIM(0)) if _MALLOC_TRIM is not None else False


async def trim_periodically(seconds: float = TRIM_SECONDS) -> None:
    """Until cancelled: trim every `seconds` (a few milliseconds each, off the event loop)."""
    if _MALLOC_TRIM is None:
        return
    loop = asyncio.get_running_loop()
    while True:
        await asyncio.sleep(seconds)
        await loop.run_in_executor(None, trim)
