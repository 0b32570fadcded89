"""What the task modules' answer types say to the OpenAPI document, without the core importing pydantic.

Each task module declares the per-row answer of `/predict` as a `TypedDict` (`BinaryAnswer`, ...): `records()` builds
plain dicts of that type (mypy checks them; nothing is built per row beyond the dict), and `service.openapi.responses`
turns the same type into the document's schema. Fields say what they mean with `Annotated[..., Doc("...")]` and their
bounds with `Minimum`, which that module reads into the schema.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Doc:
    """The description of an answer field in the OpenAPI document."""

    text: str


@dataclass(frozen=True)
class Minimum:
    """The least value of a numeric answer field, stated in the OpenAPI document."""

    value: int


WITH_PROBABILITIES = Doc("With `return_probabilities`.")
