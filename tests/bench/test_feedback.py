"""The feedback benchmark's bodies, answer parsing and figures, the bench servers' settings and the command line,
without starting anything."""

from __future__ import annotations

import threading
from pathlib import Path

import orjson
import pytest

from bench.__main__ import arguments
from bench.config import FEEDBACK_MODEL, VARIANT_BY_KEY
from bench.feedback import (
    Bodies,
    Sample,
    Usage,
    bodies,
    corrected,
    database_processes,
    encode,
    interleave,
    percentile,
    sample_of,
    summarize,
    variant,
)
from bench.servers import server_env

REQUESTS = [["a-0", "a-1", "a-2"], ["b-0", "b-1", "b-2"]]


def items(body: bytes) -> list[dict[str, str]]:
    decoded: list[dict[str, str]] = orjson.loads(body)["feedback"]
    return decoded


def test_one_body_labels_predictions_of_different_requests() -> None:
    assert interleave(REQUESTS) == [("a-0", 0), ("b-0", 0), ("a-1", 1), ("b-1", 1), ("a-2", 2), ("b-2", 2)]
    assert interleave([["a-0", "a-1"], ["b-0"]]) == [("a-0", 0), ("b-0", 0), ("a-1", 1)]
    assert interleave([]) == []


def test_bodies_hold_at_most_the_items_asked_for() -> None:
    encoded = encode([(f"id-{n}", "benign") for n in range(250)], 100)
    assert [len(items(body)) for body in encoded] == [100, 100, 50]
    assert items(encoded[2])[-1] == {"prediction_id": "id-249", "label": "benign"}


def test_fresh_labels_first_then_corrections_then_the_truth_again() -> None:
    source = bodies(REQUESTS, ["benign", "malignant", "benign"], per_body=4)
    taken = [source.take() for _ in range(5)]
    assert [fresh for _, fresh in taken] == [True, True, False, False, False]
    first, second, relabel, _, again = (items(body) for body, _ in taken)
    assert [i["prediction_id"] for i in first] == ["a-0", "b-0", "a-1", "b-1"]
    assert [i["label"] for i in first] == ["benign", "benign", "malignant", "malignant"]
    assert [i["prediction_id"] for i in second] == ["a-2", "b-2"]
    assert [i["label"] for i in relabel] == ["malignant", "malignant", "benign", "benign"]
    assert again == first


def test_a_correction_is_another_class() -> None:
    assert corrected("benign", ["benign", "malignant"]) == "malignant"
    assert corrected("7", [str(d) for d in range(10)]) == "0"
    assert corrected("only", ["only"]) == "only"


def test_bodies_are_taken_once_each_across_threads() -> None:
    source = Bodies([bytes([n]) for n in range(200)], [b"r"] * 200)
    seen: list[bytes] = []

    def take() -> None:
        seen.extend(source.take()[0] for _ in range(50))

    threads = [threading.Thread(target=take) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(seen) == [bytes([n]) for n in range(200)]


def test_an_answer_says_how_many_items_were_accepted_and_why_others_were_not() -> None:
    answer = orjson.dumps(
        {
            "accepted": 98,
            "errors": [
                {"index": 3, "code": "unknown_prediction", "message": "never issued", "field": "x"},
                {"index": 7, "code": "invalid_input", "message": "not a class", "field": "y"},
            ],
        }
    )
    sample = sample_of(200, answer, 0.02, fresh=True)
    assert (sample.status, sample.accepted, sample.refused) == (200, 98, 2)
    assert sample.error == "unknown_prediction: never issued"
    assert sample_of(200, b'{"accepted": 100, "errors": []}', 0.02, fresh=False).error is None


def test_failed_and_unreadable_answers_are_failures() -> None:
    refused = sample_of(503, b'{"error": {"code": "unavailable"}}', 0.5, fresh=True)
    assert refused.status == 503 and refused.accepted == 0 and refused.error is not None
    assert refused.error.startswith("HTTP 503: ")
    garbled = sample_of(200, b"<html>", 0.5, fresh=True)
    assert garbled.status == 0 and garbled.error is not None and "unreadable 200 answer" in garbled.error


def test_nearest_rank_percentiles() -> None:
    values = [float(n) for n in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile([3.0, 1.0, 2.0], 99) == 3.0
    assert percentile([5.0], 50) == 5.0
    assert percentile([], 50) is None


def test_summary_counts_only_answered_requests_and_accepted_items() -> None:
    samples = [
        *(Sample(0.010, fresh=True, status=200, accepted=100) for _ in range(6)),
        *(
            Sample(0.030, fresh=False, status=200, accepted=99, refused=1, error="unknown_prediction: x")
            for _ in range(3)
        ),
        Sample(0.500, fresh=False, status=0, error="ConnectionResetError: reset"),
    ]
    before = Usage({1: 10.0, 2: 1.0}, {}, 5.0)
    after = Usage({1: 10.3, 2: 1.15, 3: 0.05}, {}, 5.009)  # pid 3 appeared: it counts whole
    result = summarize("sqlite", samples, 2.0, before, after)
    assert (result.requests, result.failed_requests) == (9, 1)
    assert (result.items, result.item_errors, result.fresh_items, result.relabel_items) == (897, 3, 600, 297)
    assert result.items_per_s == pytest.approx(448.5)
    assert result.req_per_s == pytest.approx(4.5)
    assert result.p50_ms == pytest.approx(10.0) and result.p99_ms == pytest.approx(30.0)
    assert result.server_cpu_ms_per_request == pytest.approx(500 / 9)
    assert result.client_cpu_ms_per_request == pytest.approx(1.0)
    assert result.database_cpu_ms_per_request is None  # SQLite: inside the server
    assert result.first_error == "unknown_prediction: x"


def test_no_answer_at_all_is_not_a_rate() -> None:
    result = summarize("postgresql", [Sample(1.0, True, 0, error="timeout")], 1.0, Usage({}, {}, 0), Usage({}, {}, 0))
    assert not result.ok and result.items_per_s is None and result.p50_ms is None


def test_sqlite_has_no_database_processes() -> None:
    assert database_processes(None) == []


def test_every_service_server_logs_to_its_own_data_folder(tmp_path: Path) -> None:
    (tmp_path / "store" / "models").mkdir(parents=True)
    env = server_env(VARIANT_BY_KEY["default"], tmp_path / "store", tmp_path / "default")
    assert env["CLF_DATA_DIR"] == str(tmp_path / "default" / "data")
    assert env["CLF_LOG_SAMPLE_RATE"] == "1"
    off = server_env(VARIANT_BY_KEY["log_off"], tmp_path / "store", tmp_path / "log_off")
    assert off["CLF_LOG_SAMPLE_RATE"] == "0" and off["CLF_DATA_DIR"] == str(tmp_path / "log_off" / "data")
    assert "CLF_DATA_DIR" not in server_env(VARIANT_BY_KEY["fastapi_proba"], tmp_path / "store", tmp_path / "peer")


def test_the_log_off_variant_and_the_feedback_servers() -> None:
    off = VARIANT_BY_KEY["log_off"]
    assert off.label == "service 1 worker, prediction log off" and off.models == ("breast_cancer", "digits")
    assert VARIANT_BY_KEY["default"].log_sample_rate == 1.0
    server = variant("postgresql")
    assert server.label == "service 1 worker, prediction log on PostgreSQL" and server.models == (FEEDBACK_MODEL,)
    assert server.settings_env()["CLF_LOG_SAMPLE_RATE"] == "1" and server.workers == 1


def test_feedback_flags() -> None:
    assert arguments([]).feedback_databases == ["sqlite", "postgresql"]
    assert not arguments([]).no_feedback and not arguments([]).feedback_only
    assert arguments(["--feedback-only", "--feedback-databases", "postgresql"]).feedback_databases == ["postgresql"]
    assert arguments(["--no-feedback"]).no_feedback
    with pytest.raises(SystemExit):
        arguments(["--no-feedback", "--feedback-only"])
    with pytest.raises(SystemExit):
        arguments(["--feedback-databases", "mysql"])
