"""Times in requests and on the command line: ISO 8601 (`2026-11-29T10:00:00Z`, naive means UTC) or an age
before now (`30d`, `12h`, `15m`, `90s`)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

_AGE = re.compile(r"(\d+(?:\.\d+)?)([smhd])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_time(text: str, now: datetime) -> datetime:
    """An aware UTC datetime; raises ValueError saying what is accepted."""
    age = _AGE.fullmatch(text.strip())
    if age:
        seconds = float(age.group(1)) * _UNIT_SECONDS[age.group(2)]
        try:
            return now - timedelta(seconds=seconds)
        except OverflowError:
            raise ValueError(f"'{text}' reaches before year 1") from None
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"'{text[:64]}' is neither an ISO 8601 time (2026-11-29T10:00:00Z) nor an age (30d, 12h, 15m, 90s)"
        ) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
