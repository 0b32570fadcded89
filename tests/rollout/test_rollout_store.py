"""Rollout's store (model versions, what is served and shadowed, admin actions, shadows' decisions), the same tests
on SQLite and on a real PostgreSQL (bench/postgres.py)."""

from __future__ import annotations

from datetime import timedelta

import numpy as np

from service.database.codecs import encode_floats, encode_keys
from service.feedback.feedback_store import LabelWrite
from service.feedback.stores import LogStores
from service.rollout.rollout_store import AdminAction, ShadowRecord
from tests.feedback.helpers import T0, decisions_of, feedback, logged, prediction, request_record

HOUR = T0 + timedelta(hours=1)


def test_a_model_version_is_remembered_once(stores: LogStores) -> None:
    store = stores.rollout
    store.remember_version("digits", "v1", "multiclass", {"classes": ["0", "1"]}, T0)
    store.remember_version("digits", "v1", "multiclass", {"classes": ["changed"]}, T0 + timedelta(days=1))
    assert store.version("digits", "v1") == ("multiclass", {"classes": ["0", "1"]})
    assert store.version("digits", "v2") is None
    assert store.models() == {"digits"}


def test_a_label_that_arrived_before_the_shadows_decisions_gets_them(stores: LogStores) -> None:
    (key,) = logged(stores.predictions, request_record(decisions=["0", "1", "2"]))
    feedback(stores.feedback, [LabelWrite("1", prediction(stores.predictions, key, 1))], [], T0 + timedelta(minutes=1))
    shadow = ShadowRecord(key, "digits", "v2", 3, encode_keys(decisions_of(["0", "7", "2"])), encode_floats(np.ones(3)))
    stores.rollout.write_shadows([shadow])
    pairs = {(p.version, p.decision_key, p.truth_key): p.count for p in stores.realized.pair_counts(T0, HOUR)}
    assert pairs == {("v1", "1", "1"): 1, ("v2", "7", "1"): 1}  # the served version right, its shadow wrong
    relabelled = feedback(
        stores.feedback, [LabelWrite("7", prediction(stores.predictions, key, 1))], [], T0 + timedelta(minutes=2)
    )
    assert relabelled.first_labels == set()
    pairs = {(p.version, p.decision_key, p.truth_key): p.count for p in stores.realized.pair_counts(T0, HOUR)}
    assert pairs == {("v1", "1", "7"): 1, ("v2", "7", "7"): 1}  # a relabel keeps the shadow's decision


def test_admin_actions_are_recorded_beside_the_served_version(stores: LogStores) -> None:
    store = stores.rollout
    promoted = AdminAction(T0, "key:ops", "promote", "digits", "v1", "v2")
    shadowed = AdminAction(T0 + timedelta(minutes=1), "client:127.0.0.1", "shadow", "digits", None, "v3")
    stopped = AdminAction(T0 + timedelta(minutes=2), "cli:alice", "stop_shadow", "digits", "v3", None)
    store.promote(promoted)
    store.set_shadow(shadowed)
    assert store.rollout().promoted == {"digits": "v2"} and store.rollout().shadows == {"digits": "v3"}
    store.set_shadow(stopped)
    assert store.rollout().shadows == {}
    other = AdminAction(T0, "key:ops", "promote", "breast_cancer", None, "v9")
    store.promote(other)
    assert store.admin_actions("digits") == [promoted, shadowed, stopped]
    assert store.admin_actions("breast_cancer") == [other]


def test_a_version_is_vetted_once_compared_or_shadowed(stores: LogStores) -> None:
    store = stores.rollout
    assert not store.vetted("digits", "v2")
    store.record(AdminAction(T0, "cli:alice", "compare", "digits", "v1", "v2"))
    assert store.vetted("digits", "v2") and store.vetted("digits", "v1")  # either side of a comparison
    assert not store.vetted("breast_cancer", "v2")
    store.set_shadow(AdminAction(T0, "key:ops", "shadow", "digits", None, "v3"))  # the route
    assert store.vetted("digits", "v3")
    (key,) = logged(stores.predictions, request_record())  # CLF_SHADOW: its decisions in the log
    store.write_shadows([ShadowRecord(key, "digits", "v4", 3, encode_keys(decisions_of(["0", "1", "2"])),
                                      encode_floats(np.ones(3)))])  # fmt: skip
    assert store.vetted("digits", "v4")
    store.promote(AdminAction(T0, "key:ops", "promote", "digits", "v1", "v5"))
    assert not store.vetted("digits", "v5")  # a promotion is no evidence
