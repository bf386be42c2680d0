"""malloc.trim gives the pages freed by a burst back to the system (glibc; this machine's C library)."""

from __future__ import annotations

from pathlib import Path

from scaledapp import malloc


def _rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def test_the_pages_a_burst_freed_go_back_to_the_system() -> None:
    # 160 MiB in 8 KiB blocks (glibc's heap, not mmap), one block in 16 kept: the freed pages sit between kept
    # blocks, where glibc gives nothing back by itself.
    burst = [bytearray(8192) for _ in range(20_000)]
    kept = burst[::16]
    del burst
    before = _rss_mib()
    assert malloc.trim()
    assert before - _rss_mib() > 100, f"{before:.0f} MiB resident before the trim, {_rss_mib():.0f} after"
    assert len(kept) == 1250
