"""Time as status stores it: RFC 3339 text in, aware datetimes out. Pure: `now` is always an argument."""

from __future__ import annotations

from datetime import UTC, datetime


def parse_time(text: str | None) -> datetime | None:
    """An RFC 3339 timestamp from status, or None when absent or unreadable (a hand-edited status must
    not crash the scaler; forgetting a window only makes it wait longer)."""
    if not text:
        return None
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def format_time(moment: datetime) -> str:
    """RFC 3339 in UTC with second precision, the form Kubernetes uses for condition times."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def seconds_since(earlier: str | None, now: datetime) -> float | None:
    start = parse_time(earlier)
    return None if start is None else (now - start).total_seconds()
