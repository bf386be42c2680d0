"""Kubernetes quantities: exact parsing and canonical formatting."""

from __future__ import annotations

from decimal import Decimal

import pytest

from scaledapp.quantity import (
    format_bytes,
    format_cpu,
    parse_bytes,
    parse_cpu_millicores,
    parse_quantity,
    scale_bytes,
    scale_millicores,
)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("250m", Decimal("0.25")),
        ("1", Decimal(1)),
        ("0.5", Decimal("0.5")),
        ("1.5", Decimal("1.5")),
        ("2k", Decimal(2000)),
        ("1M", Decimal(10**6)),
        ("1G", Decimal(10**9)),
        ("64Mi", Decimal(64 * 2**20)),
        ("1Gi", Decimal(2**30)),
        ("1.5Gi", Decimal(3 * 2**29)),
        ("8Ti", Decimal(8 * 2**40)),
        ("1e3", Decimal(1000)),
        ("100Ki", Decimal(102400)),
    ],
)
def test_parse_quantity(text: str, value: Decimal) -> None:
    assert parse_quantity(text) == value


@pytest.mark.parametrize("text", ["", "abc", "1.2.3", "5 Mi", "Mi", "1mi", "1KiB"])
def test_parse_quantity_rejects_garbage(text: str) -> None:
    with pytest.raises(ValueError, match="quantity"):
        parse_quantity(text)


def test_cpu_and_memory_units() -> None:
    assert parse_cpu_millicores("0.5") == parse_cpu_millicores("500m") == 500
    assert parse_cpu_millicores("4") == 4000
    assert parse_cpu_millicores("0.0001") == 1  # rounded up, as Kubernetes does
    assert parse_bytes("512Mi") == 512 * 2**20
    assert parse_bytes("1G") == 10**9


@pytest.mark.parametrize(("millicores", "text"), [(500, "500m"), (1000, "1"), (1500, "1500m"), (4000, "4"), (0, "0")])
def test_format_cpu(millicores: int, text: str) -> None:
    assert format_cpu(millicores) == text
    assert parse_cpu_millicores(text) == millicores


@pytest.mark.parametrize(
    ("count", "text"),
    [(64 * 2**20, "64Mi"), (2**30, "1Gi"), (3 * 2**29, "1536Mi"), (8 * 2**40, "8Ti"), (1000, "1000"), (0, "0")],
)
def test_format_bytes(count: int, text: str) -> None:
    assert format_bytes(count) == text
    assert parse_bytes(text) == count


def test_scaling_rounds_up_to_tidy_sizes() -> None:
    assert scale_bytes(64 * 2**20, 2.0) == 128 * 2**20
    assert scale_bytes(64 * 2**20, 1.3) == 84 * 2**20  # 83.2Mi -> 84Mi
    assert scale_bytes(128 * 2**20, 0.5) == 64 * 2**20
    assert scale_millicores(500, 2.0) == 1000
    assert scale_millicores(333, 1.5) == 500  # 499.5 -> 500
    assert scale_millicores(1000, 1 / 3) == 340


def test_negative_sizes_are_rejected() -> None:
    with pytest.raises(ValueError, match="negative"):
        format_cpu(-1)
    with pytest.raises(ValueError, match="negative"):
        format_bytes(-1)
