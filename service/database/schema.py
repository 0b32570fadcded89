"""The prediction log's tables, declared once (SQLAlchemy Core); `migrations/` creates them revision by revision.

One row per `/predict` request holds its rows' decisions, scores (JSON) and inputs, in row order: one insert per
request keeps the log cheap at high row rates. A prediction is `(key, row)`: its request's key and its row.
Labels and outcomes are keyed by prediction and carry copies of what the realized metrics group by (model,
version, prediction time, the model's own decision and confidence), and `prediction_counts` counts predictions
per minute, so the metrics are aggregates over the labelled predictions and a few counters, never a scan of the
whole log.

Each prediction, label and outcome names its caller: the name of the API key that sent it (NULL when the service
takes no keys), so that the feedback of one client can be found, left out of an export or a retraining, and voided.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect

KEY_LENGTH = 32
NAME_LENGTH = 256
VERSION_LENGTH = 64
ACTION_LENGTH = 32
OUTCOME_LENGTH = 64
BATCH_LENGTH = 16
CALLER_LENGTH = 64  # an API key's name (service/auth/keys.py KEY_NAME)

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class UTCDateTime(sa.TypeDecorator[datetime]):
    """An aware UTC datetime: `timestamptz` on PostgreSQL, a naive UTC ISO string on SQLite.

    On SQLite the string is the one SQLAlchemy's DATETIME writes (`2026-11-29 10:46:03.783335`), made by
    `datetime.isoformat` in C: SQLAlchemy's own formatting cost more than the rest of a logged request's insert.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("UTCDateTime takes aware datetimes only")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    def bind_processor(self, dialect: Dialect) -> Callable[[datetime | None], Any] | None:
        if dialect.name != "sqlite":
            return super().bind_processor(dialect)

        def process(value: datetime | None) -> str | None:
            naive = self.process_bind_param(value, dialect)
            return None if naive is None else naive.isoformat(sep=" ", timespec="microseconds")

        return process

    def result_processor(self, dialect: Dialect, coltype: object) -> Callable[[Any], datetime | None] | None:
        if dialect.name != "sqlite":
            return super().result_processor(dialect, coltype)

        def process(value: str | None) -> datetime | None:
            return None if value is None else datetime.fromisoformat(value).replace(tzinfo=UTC)

        return process


def _key() -> sa.String:
    return sa.String(KEY_LENGTH)


prediction_requests = sa.Table(
    "prediction_requests",
    metadata,
    sa.Column("key", _key(), primary_key=True),  # time-ordered (service/feedback/ids.py)
    sa.Column("model", sa.String(NAME_LENGTH), nullable=False),
    sa.Column("version", sa.String(VERSION_LENGTH), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("request_id", sa.String(NAME_LENGTH)),
    sa.Column("rows", sa.Integer, nullable=False),
    # each row's decision at the model's defaults (codecs.encode_keys) and its calibrated confidence, the
    # probability that decision is right (Task.expected_correct, codecs.encode_floats): binary, so that a label
    # reads its one row without parsing the request's; before the large columns, which SQLite would otherwise
    # read through to reach them
    sa.Column("decision_keys", sa.LargeBinary, nullable=False),
    sa.Column("confidence", sa.LargeBinary, nullable=False),
    sa.Column("options", sa.Text, nullable=False),  # JSON object: the options the request set
    sa.Column("decisions", sa.Text, nullable=False),  # JSON list: each row's answer, scores included
    sa.Column("inputs", sa.LargeBinary),  # rows x features in feature order (codecs.encode_inputs); NULL: not logged
    sa.Column("caller", sa.String(CALLER_LENGTH)),  # added by 0005, after the large columns: only exports read it
    # no index but the key: a logged request is written with as little work as it can be; time ranges are key ranges
)

# logged predictions per model version and minute (of prediction time), so that counting a day of predictions reads
# 1,440 rows, not every request of the day
prediction_counts = sa.Table(
    "prediction_counts",
    metadata,
    sa.Column("model", sa.String(NAME_LENGTH), primary_key=True),
    sa.Column("version", sa.String(VERSION_LENGTH), primary_key=True),
    sa.Column("minute", UTCDateTime(), primary_key=True),
    sa.Column("rows", sa.BigInteger, nullable=False),
)

model_versions = sa.Table(
    "model_versions",
    metadata,
    sa.Column("model", sa.String(NAME_LENGTH), primary_key=True),
    sa.Column("version", sa.String(VERSION_LENGTH), primary_key=True),
    sa.Column("task", sa.String(NAME_LENGTH), nullable=False),
    # JSON: what feedback and realized metrics need of a version no worker serves any more (classes, decision
    # defaults, validation metrics, feature names)
    sa.Column("metadata", sa.Text, nullable=False),
    sa.Column("first_served_at", UTCDateTime(), nullable=False),
)

# what every worker and replica sharing the log serves of a model: the version promoted
# (`POST /admin/models/{name}/promote`; NULL: the newest version that is not a candidate) and the shadow version
# set through `PUT /admin/models/{name}/shadow` (NULL: the one of `CLF_SHADOW`, if any)
served_versions = sa.Table(
    "served_versions",
    metadata,
    sa.Column("model", sa.String(NAME_LENGTH), primary_key=True),
    sa.Column("version", sa.String(VERSION_LENGTH)),
    sa.Column("promoted_at", UTCDateTime()),
    sa.Column("shadow_version", sa.String(VERSION_LENGTH)),
    sa.Column("shadow_set_at", UTCDateTime()),
)

# every change of what is served or shadowed, and every comparison of two versions, with who asked: the admin routes
# (caller `key:<name>` or `client:<address>`) and `python -m models promote` / `compare` (`cli:<user>`). Actions:
# `promote` (from the version served to the one promoted), `shadow` and `stop_shadow` (from the shadow before to the
# one after), `compare` (from version A to version B). Written beside `served_versions`, in the same transaction.
admin_actions = sa.Table(
    "admin_actions",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("at", UTCDateTime(), nullable=False),
    sa.Column("caller", sa.String(NAME_LENGTH), nullable=False),
    sa.Column("action", sa.String(ACTION_LENGTH), nullable=False),
    sa.Column("model", sa.String(NAME_LENGTH), nullable=False),
    sa.Column("from_version", sa.String(VERSION_LENGTH)),
    sa.Column("to_version", sa.String(VERSION_LENGTH)),
    sa.Index(None, "model", "at"),
)

# a shadow version's decisions on the rows of a logged live request, in the request's row order
shadow_predictions = sa.Table(
    "shadow_predictions",
    metadata,
    sa.Column("key", _key(), primary_key=True),  # the live request's
    sa.Column("model", sa.String(NAME_LENGTH), nullable=False),
    sa.Column("version", sa.String(VERSION_LENGTH), nullable=False),  # the shadow's
    sa.Column("rows", sa.Integer, nullable=False),
    sa.Column("decision_keys", sa.LargeBinary, nullable=False),  # as prediction_requests'
    sa.Column("confidence", sa.LargeBinary, nullable=False),
)

# the current label of each labelled prediction
labels = sa.Table(
    "labels",
    metadata,
    sa.Column("key", _key(), primary_key=True),
    sa.Column("row", sa.Integer, primary_key=True),
    sa.Column("model", sa.String(NAME_LENGTH), nullable=False),
    sa.Column("version", sa.String(VERSION_LENGTH), nullable=False),
    sa.Column("predicted_at", UTCDateTime(), nullable=False),
    sa.Column("decision_key", sa.Text),  # the model's own decision (service.classifiers.Truth key)
    sa.Column("confidence", sa.Float, nullable=False),
    sa.Column("truth_key", sa.Text, nullable=False),
    sa.Column("first_batch", sa.String(BATCH_LENGTH), nullable=False),  # the feedback request of the first label
    sa.Column("first_labelled_at", UTCDateTime(), nullable=False),
    sa.Column("labelled_at", UTCDateTime(), nullable=False),
    # the shadow version's decision on the same row and its confidence, when one was logged before the first label
    sa.Column("shadow_version", sa.String(VERSION_LENGTH)),
    sa.Column("shadow_decision_key", sa.Text),
    sa.Column("shadow_confidence", sa.Float),
    sa.Column("caller", sa.String(CALLER_LENGTH)),  # of this label
    sa.Index(None, "model", "predicted_at"),
    sa.Index(None, "first_batch"),  # a feedback request finds the labels it was first to give
)

# every label ever received, relabels included; a voided label (`python -m service.feedback void`) stays here, marked,
# and the prediction's current label is the latest one not voided. No index by caller: a void, rare, reads it all
# rather than every label paying for one more index
label_history = sa.Table(
    "label_history",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("key", _key(), nullable=False),
    sa.Column("row", sa.Integer, nullable=False),
    sa.Column("truth_key", sa.Text, nullable=False),
    sa.Column("received_at", UTCDateTime(), nullable=False),
    sa.Column("caller", sa.String(CALLER_LENGTH)),
    sa.Column("voided_at", UTCDateTime()),
    sa.Index(None, "key", "row"),
)

# one value per prediction and outcome name; a resent outcome replaces its value
outcomes = sa.Table(
    "outcomes",
    metadata,
    sa.Column("key", _key(), primary_key=True),
    sa.Column("row", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(OUTCOME_LENGTH), primary_key=True),
    sa.Column("model", sa.String(NAME_LENGTH), nullable=False),
    sa.Column("version", sa.String(VERSION_LENGTH), nullable=False),
    sa.Column("predicted_at", UTCDateTime(), nullable=False),
    sa.Column("value", sa.Float, nullable=False),
    sa.Column("first_batch", sa.String(BATCH_LENGTH), nullable=False),  # the feedback request that reported it first
    sa.Column("received_at", UTCDateTime(), nullable=False),
    sa.Column("caller", sa.String(CALLER_LENGTH)),  # of its current value
    sa.Index(None, "model", "predicted_at"),
    sa.Index(None, "first_batch"),
)
