"""Kubernetes resource quantities: parse to exact numbers, format back to canonical short strings.

Pure and exact (Decimal), so "0.5" CPU and "500m" compare equal and a doubled "64Mi" is "128Mi", not a
float with rounding noise. Only the forms the API accepts (apibase.QUANTITY_PATTERN) plus the remaining
standard suffixes and exponents are understood; anything else raises ValueError.
"""

from __future__ import annotations

import math
import re
from decimal import ROUND_CEILING, Decimal, InvalidOperation

_SUFFIXES: dict[str, Decimal] = {
    "": Decimal(1),
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "k": Decimal(10) ** 3,
    "M": Decimal(10) ** 6,
    "G": Decimal(10) ** 9,
    "T": Decimal(10) ** 12,
    "P": Decimal(10) ** 15,
    "E": Decimal(10) ** 18,
    "Ki": Decimal(2) ** 10,
    "Mi": Decimal(2) ** 20,
    "Gi": Decimal(2) ** 30,
    "Ti": Decimal(2) ** 40,
    "Pi": Decimal(2) ** 50,
    "Ei": Decimal(2) ** 60,
}
_QUANTITY = re.compile(
    r"^([+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))"  # the number
    r"(?:([eE][+-]?[0-9]+)|(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]))?$"  # a decimal exponent or a suffix
)

# Formatting picks the largest binary suffix that divides the byte count exactly (what people write).
_BINARY_FORMAT = (("Ti", 2**40), ("Gi", 2**30), ("Mi", 2**20), ("Ki", 2**10))
MEBIBYTE = 2**20


def parse_quantity(text: str) -> Decimal:
    """The exact value of a Kubernetes quantity ("250m" -> 0.25, "1Gi" -> 1073741824, "1e3" -> 1000)."""
    match = _QUANTITY.match(text.strip())
    if not match:
        raise ValueError(f"not a Kubernetes quantity: {text!r}")
    number, exponent, suffix = match.groups()
    try:
        value = Decimal(number)
        if exponent:
            value = value * Decimal(10) ** int(exponent[1:])
    except InvalidOperation as exc:  # pragma: no cover - the regex admits only valid decimals
        raise ValueError(f"not a Kubernetes quantity: {text!r}") from exc
    return value * _SUFFIXES[suffix or ""]


def parse_cpu_millicores(text: str) -> int:
    """CPU as whole millicores, rounded up as Kubernetes does ("0.1" -> 100, "1" -> 1000)."""
    return int((parse_quantity(text) * 1000).to_integral_value(rounding=ROUND_CEILING))


def parse_bytes(text: str) -> int:
    """Memory as whole bytes, rounded up ("64Mi" -> 67108864, "1G" -> 1000000000)."""
    return int(parse_quantity(text).to_integral_value(rounding=ROUND_CEILING))


def format_cpu(millicores: int) -> str:
    """Canonical CPU string: whole cores when exact ("2"), millicores otherwise ("1500m")."""
    if millicores < 0:
        raise ValueError("negative CPU")
    return str(millicores // 1000) if millicores % 1000 == 0 else f"{millicores}m"


def format_bytes(count: int) -> str:
    """Canonical memory string: the largest exact binary suffix ("128Mi", "1Gi"), else plain bytes."""
    if count < 0:
        raise ValueError("negative memory")
    for suffix, size in _BINARY_FORMAT:
        if count and count % size == 0:
            return f"{count // size}{suffix}"
    return str(count)


def scale_millicores(millicores: int, factor: float) -> int:
    """A CPU size times factor, rounded up to a whole 10m so formatted sizes stay short."""
    return math.ceil(millicores * factor / 10.0) * 10


def scale_bytes(count: int, factor: float) -> int:
    """A memory size times factor, rounded up to a whole MiB (Redis and the kubelet both like round sizes)."""
    return math.ceil(count * factor / MEBIBYTE) * MEBIBYTE
