"""Model tags, `name:version`: a version of "" or `latest` names none, it moves with every registration (the newest
version that is not a candidate)."""

from __future__ import annotations

LATEST = "latest"


def names_a_version(version: str) -> bool:
    """Whether the version part of a tag names one stored version (not "" or `latest`)."""
    return version not in ("", LATEST)
