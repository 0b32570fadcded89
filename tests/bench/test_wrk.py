"""The wrk output parser, on outputs captured from wrk 4.1.0 (Debian) with `--latency` and bench/post.lua."""

from __future__ import annotations

import pytest

from bench.config import SCENARIO_BY_KEY
from bench.wrk import LUA_SCRIPT, WrkError, command, parse, to_ms

OK = """Running 2s test @ http://127.0.0.1:33863/predict
  2 threads and 16 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    10.47ms   13.50ms 110.61ms   95.43%
    Req/Sec     0.98k   175.34     1.19k    85.71%
  Latency Distribution
     50%    7.55ms
     75%    7.99ms
     90%    9.40ms
     99%   93.96ms
  4101 requests in 2.10s, 752.92KB read
Requests/sec:   1952.59
Transfer/sec:    358.48KB
p99.9 latency: 104512us
"""

NON_2XX = """Running 1s test @ http://127.0.0.1:18765/predict
  1 threads and 2 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.53ms    1.72ms   9.13ms   85.11%
    Req/Sec     1.63k   237.82     2.09k    70.00%
  Latency Distribution
     50%  740.00us
     75%    1.86ms
     90%    4.19ms
     99%    7.79ms
  1625 requests in 1.00s, 0.86MB read
  Non-2xx or 3xx responses: 1625
Requests/sec:   1623.76
Transfer/sec:      0.86MB
p99.9 latency: 9012us
"""

SOCKET_ERRORS = """Running 1s test @ http://127.0.0.1:18766/predict
  1 threads and 2 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     0.00us    0.00us   0.00us    -nan%
    Req/Sec     0.00      0.00     0.00      -nan%
  Latency Distribution
     50%    0.00us
     75%    0.00us
     90%    0.00us
     99%    0.00us
  0 requests in 1.00s, 0.00B read
  Socket errors: connect 0, read 5148, write 0, timeout 0
Requests/sec:      0.00
Transfer/sec:       0.00B
p99.9 latency: 0us
"""


def test_a_clean_run() -> None:
    result = parse(OK)
    assert result.requests == 4101
    assert result.duration_s == pytest.approx(2.1)
    assert result.req_per_s == pytest.approx(1952.59)
    assert result.p50_ms == pytest.approx(7.55)
    assert result.p99_ms == pytest.approx(93.96)
    assert result.p999_ms == pytest.approx(104.512)  # from bench/post.lua's done(), in microseconds
    assert result.non_2xx == 0
    assert result.errors == 0


def test_non_2xx_answers_are_errors_and_microsecond_latencies_are_converted() -> None:
    result = parse(NON_2XX)
    assert result.non_2xx == 1625
    assert result.errors == 1625
    assert result.p50_ms == pytest.approx(0.74)
    assert result.p99_ms == pytest.approx(7.79)


def test_socket_errors_are_counted_by_kind() -> None:
    result = parse(SOCKET_ERRORS)
    assert result.requests == 0
    assert result.socket_errors == {"connect": 0, "read": 5148, "write": 0, "timeout": 0}
    assert result.errors == 5148


@pytest.mark.parametrize(
    ("value", "unit", "ms"),
    [("740.00", "us", 0.74), ("1.86", "ms", 1.86), ("2.00", "s", 2000.0), ("1.50", "m", 90000.0)],
)
def test_units(value: str, unit: str, ms: float) -> None:
    assert to_ms(value, unit) == pytest.approx(ms)


def test_output_without_latency_distribution_is_refused() -> None:
    without = "\n".join(line for line in OK.splitlines() if "%" not in line or "Stdev" in line or "Latency " in line)
    with pytest.raises(WrkError, match="--latency"):
        parse(without)


def test_output_without_the_p999_line_of_post_lua_is_refused() -> None:
    without = "\n".join(line for line in OK.splitlines() if not line.startswith("p99.9"))
    with pytest.raises(WrkError, match="p99.9"):
        parse(without)


def test_post_lua_prints_the_line_the_parser_reads() -> None:
    script = LUA_SCRIPT.read_text()
    assert "function done(summary, latency, requests)" in script
    assert '"p99.9 latency: %dus\\n", latency:percentile(99.9)' in script


def test_command_posts_to_the_path_given() -> None:
    argv = command("http://127.0.0.1:1", SCENARIO_BY_KEY["1x16"], 3.0, "/v2/models/digits/infer")
    assert argv[-1] == "http://127.0.0.1:1/v2/models/digits/infer"
    assert command("http://127.0.0.1:1", SCENARIO_BY_KEY["1x16"], 3.0)[-1] == "http://127.0.0.1:1/predict"


def test_command_uses_at_most_two_threads_and_the_lua_script() -> None:
    argv = command("http://127.0.0.1:1", SCENARIO_BY_KEY["1x16"], 3.0)
    assert "--threads=2" in argv and "--connections=16" in argv and "--duration=3s" in argv and "--latency" in argv
    assert any(arg.endswith("post.lua") for arg in argv)
    assert "--threads=1" in command("http://127.0.0.1:1", SCENARIO_BY_KEY["1x1"], 3.0)
