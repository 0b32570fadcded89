"""SIGTERM to `bentoml serve` under load: the requests under way are answered, and every answered prediction is in the
log afterwards.

What BentoML does: the circus arbiter passes SIGTERM on to each worker, whose uvicorn stops accepting, finishes the
requests it has begun and closes its idle kept-alive connections; then the service's shutdown hook writes the
prediction log's queue (here only the stop writes it: a 30-s flush interval). Requests sent once the workers stop
accepting fail to connect, or find their kept-alive connection closed.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from models.catalog import evaluation_rows
from service.database.engine import create_database_engine
from service.feedback.ids import parse_id
from service.feedback.prediction_store import PredictionStore
from tests.e2e.conftest import SERVER_LOGS, SERVERS, assert_under_way_answered, recorded_load, serving, stop

pytestmark = pytest.mark.e2e

MODEL = "breast_cancer"
CLIENTS = 8


def test_sigterm_under_load_answers_what_was_under_way_and_loses_no_answered_prediction(
    e2e_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> None:
    home: Path = tmp_path_factory.mktemp("serve-sigterm")
    rows = evaluation_rows(MODEL)[0][:20].tolist()
    settings = {"workers": "2", "models": MODEL, "log_flush_seconds": "30"}  # only the stop writes the queue
    with serving(e2e_env, home, **settings) as url, recorded_load(url, MODEL, rows, CLIENTS) as outcomes:
        signalled = time.time()
        stop(SERVERS[url], signal.SIGTERM, SERVER_LOGS[url])  # returns once the arbiter has exited

    assert_under_way_answered(outcomes, signalled)
    answered = [o for o in outcomes if o.status == 200]
    store = PredictionStore(create_database_engine(f"sqlite:///{home / 'data' / 'predictions.db'}"))
    try:
        wanted = [(ref.key, ref.row) for o in answered for ref in map(parse_id, o.ids) if ref is not None]
        assert len(wanted) == len(answered) * len(rows)
        assert len(store.find_predictions(wanted)) == len(wanted)  # every answered prediction was written
    finally:
        store.engine.dispose()
    after = [o for o in outcomes if o.sent >= signalled]
    refused = {str(o.status) for o in after if o.status != 200}
    assert refused <= {"ConnectError", "ReadError", "RemoteProtocolError"}, refused  # no answer but refusals
