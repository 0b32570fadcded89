"""The rule of which version serves and which shadows: pinned, else promoted, else latest."""

from __future__ import annotations

from service.rollout.plan import RolloutPlan
from service.rollout.rollout_store import Rollout

PLAN = RolloutPlan.configured(["free", "pinned:v1", "latest_named:latest"], ["free:v9", "pinned:v8"])


def test_a_pinned_model_serves_its_version_whatever_is_promoted() -> None:
    promoted = Rollout(promoted={"free": "v2", "pinned": "v2", "latest_named": "v3"})
    assert PLAN.names == ("free", "pinned", "latest_named")
    assert [PLAN.version(name, promoted) for name in PLAN.names] == ["v2", "v1", "v3"]
    assert [PLAN.promoted(name, promoted) for name in PLAN.names] == ["v2", None, "v3"]


def test_a_model_nothing_was_promoted_for_serves_its_latest_version_and_follows_nothing() -> None:
    assert [PLAN.version(name, Rollout()) for name in PLAN.names] == ["latest", "v1", "latest"]
    assert [PLAN.promoted(name, Rollout()) for name in PLAN.names] == [None, None, None]


def test_the_admin_routes_shadow_comes_before_the_configured_one() -> None:
    shadows = Rollout(shadows={"free": "v5", "latest_named": "v6"})
    assert [PLAN.shadow(name, shadows) for name in PLAN.names] == ["v5", "v8", "v6"]
    assert [PLAN.shadow(name, Rollout()) for name in PLAN.names] == ["v9", "v8", None]
