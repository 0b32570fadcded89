"""docs/container.md renders from given measurements: the ratios to the host, the targets met or not, the commit and
the command; and the command line's defaults."""

from __future__ import annotations

import argparse

import pytest

from bench import container
from bench.config import SCENARIO_BY_KEY
from bench.container import ContainerRun, ImageFacts, Sizes, render
from bench.machine import Machine
from bench.results import Point
from bench.wrk import WrkResult
from tests.test_figures import COMMIT, GENERATED_OPENING

MACHINE = Machine(
    cpus=2, cpu_model="Test CPU", ram_gb=24.0, python="3.11.7", packages={"bentoml": "1.4.40"},
    wrk="wrk 4.1.0", commit="abc1234", changed=(), date="2026-01-01 00:00", load_before="0.10 / 0.10 / 0.10",
)  # fmt: skip
IMAGE_PYTHON = {"python": "3.11.2", "libpython": "linked in", "configure": "neither", "loop_us": "95.0"}
HOST_PYTHON = {"python": "3.11.7", "libpython": "shared", "configure": "neither", "loop_us": "120.5"}
FACTS = ImageFacts("classifier-service:latest", "0.1.0-abc1234", "base:bookworm", IMAGE_PYTHON, "2", "netavark")
ENV = container.IMAGE_ENV
SITE = f"{ENV}/lib/python3.11/site-packages"
SIZES = Sizes(
    540_000_000,
    122_000_000,
    {
        "/": 560_000, container.DEBIAN_PYTHON: 28_000, ENV: 420_000, container.IMAGE_MODELS: 12_000,
        **{f"{SITE}/package{i}": 1000 * i for i in range(1, 11)},
        f"{container.IMAGE_MODELS}/digits": 6_000, f"{container.IMAGE_MODELS}/breast_cancer": 100,
    },
)  # fmt: skip


def point(mode: str, model: str, rps: float, workers: int = 1) -> Point:
    result = WrkResult(
        requests=int(rps * 10), duration_s=10.0, req_per_s=rps, p50_ms=4.0, p99_ms=8.0, p999_ms=12.0, non_2xx=0,
        socket_errors={"connect": 0, "read": 0, "write": 0, "timeout": 0},
    )  # fmt: skip
    variant = container.variant(mode, workers)
    return Point(variant, model, SCENARIO_BY_KEY["1x16"], result, cpu_ms_per_request=0.3, rss_mb=400)


def run_of(rates: dict[tuple[str, str], list[float]], sizes: Sizes | None = SIZES) -> ContainerRun:
    """A run of 1 worker: the req/s of each (mode, model) per round; the median round is the one shown."""
    rounds = {(mode, 1, model): [point(mode, model, rps) for rps in values] for (mode, model), values in rates.items()}
    points = [container.runner.median_run(runs) for runs in rounds.values()]
    return ContainerRun(
        MACHINE, "python -m bench.container --repeat 3", 10.0, 3, FACTS, HOST_PYTHON, sizes, points, rounds,
        {"host": [7.0, 6.0, 8.0], "published": [5.5, 5.0, 6.5]}, {1: 2}, "0.20 / 0.20 / 0.20",
    )  # fmt: skip


def rates(published: float, host_network: float) -> dict[tuple[str, str], list[float]]:
    found = {}
    for model in ("breast_cancer", "digits"):
        found["host", model] = [1000.0, 1100.0, 900.0]
        found["published", model] = [published * r for r in (1000.0, 1100.0, 900.0)]
        found["host_network", model] = [host_network * r for r in (1000.0, 1100.0, 900.0)]
    return found


def target_rows(page: str) -> list[str]:
    section = page.split("## Targets", 1)[1].split("\n## ", 1)[0]
    return [line for line in section.splitlines() if line.startswith("| req/s") or line.startswith("| image")]


def test_the_page_is_generated_names_its_commit_and_its_command() -> None:
    page = render(run_of(rates(1.0, 1.0)))
    assert GENERATED_OPENING.match(page.split("\n\n")[1])
    named = COMMIT.search(page)
    assert named is not None and named.group(1) == "abc1234"
    assert "Command: `python -m bench.container --repeat 3`" in page
    assert "version 0.1.0-abc1234" in page
    assert "| image's Python | 3.11.2, libpython linked in, `configure` options for PGO/LTO: neither; " in page
    assert "95.0 µs (best of 3 x 20 x 100) |" in page and "120.5 µs (best of 3 x 20 x 100) |" in page
    assert "| host's Python | 3.11.7, libpython shared," in page


def test_each_container_mode_is_held_to_the_ratio_at_its_lowest_model() -> None:
    run = run_of(rates(0.97, 0.90))
    run.rounds["published", 1, "digits"] = [point("published", "digits", 0.93 * r) for r in (1000.0, 1100.0, 900.0)]
    run = ContainerRun(**{**vars(run), "points": [container.runner.median_run(r) for r in run.rounds.values()]})
    published, host_network, size = target_rows(render(run))
    assert "lowest 0.93x (digits, 1 worker)" in published and published.endswith("| **not met** |")
    assert "lowest 0.90x (breast_cancer, 1 worker)" in host_network and host_network.endswith("| **not met** |")
    assert "540 MB" in size and size.endswith("| met |")


def test_ratios_at_or_above_the_target_are_met() -> None:
    published, host_network, _ = target_rows(render(run_of(rates(0.95, 1.02))))
    assert published.endswith("| met |") and host_network.endswith("| met |")


def test_the_throughput_table_gives_the_median_run_its_ratio_and_the_range_per_round() -> None:
    found = rates(1.0, 1.0)
    found["published", "digits"] = [960.0, 1210.0, 1080.0]  # rounds' ratios 0.96, 1.10, 1.20
    page = render(run_of(found))
    row = next(line for line in page.splitlines() if line.startswith("| digits | 1 | container, port published |"))
    assert "| 1,080 |" in row and "| 1.10x (0.96x–1.20x) | 1.00x (1.00x–1.00x) |" in row  # the median run, paired
    host = next(line for line in page.splitlines() if line.startswith("| digits | 1 | host `bentoml serve` |"))
    assert "| 1,000 |" in host and host.endswith("| — | — |")


def test_the_target_takes_the_median_of_paired_rounds_not_the_ratio_of_medians() -> None:
    found = rates(1.0, 1.0)
    found["host", "digits"] = [1000.0, 1300.0, 700.0]  # the load drifted: both sides slowed and sped up together
    found["published", "digits"] = [940.0, 1250.0, 680.0]  # medians 940 / 1,000; rounds 0.94, 0.96, 0.97
    published, _, _ = target_rows(render(run_of(found)))
    assert "lowest 0.96x (digits, 1 worker)" in published and published.endswith("| met |")


def test_a_server_not_measured_is_not_applicable_not_met() -> None:
    found = rates(1.0, 1.0)
    del found["host_network", "digits"]
    page = render(run_of(found))
    assert "| req/s at 1 row x 16, container, host network / host | ≥ 0.95x | — | n/a (not measured) |" in page


def test_startup_medians_and_ranges() -> None:
    page = render(run_of(rates(1.0, 1.0)))
    assert "| container: `podman run` to `/readyz` 200 | 5.5 s (5.0–6.5) |" in page
    assert "| host: `bentoml serve` launch to `/readyz` 200 | 7.0 s (6.0–8.0) |" in page


def test_the_size_table_splits_the_image_and_lists_the_largest_packages() -> None:
    page = render(run_of(rates(1.0, 1.0)))
    assert "| · Debian's OS and Python 3.11: everything but the two rows below | 131.1 MB |" in page  # 128,000 KiB
    listed = [f"`package{i}`" for i in range(1, 11) if f"| · · `package{i}` |" in page]
    assert listed == [f"`package{i}`" for i in range(3, 11)]  # the 8 largest
    assert page.index("`package10`") < page.index("`package3`")
    assert "| · · `digits` | 6.1 MB |" in page
    assert "(not measured in this run)" in render(run_of(rates(1.0, 1.0), sizes=None))
    _, _, size = target_rows(render(run_of(rates(1.0, 1.0), sizes=None)))
    assert size.endswith("| n/a (not measured) |")


def test_too_large_an_image_is_not_met() -> None:
    larger = Sizes(640_000_000, None, SIZES.du_kib)
    _, _, size = target_rows(render(run_of(rates(1.0, 1.0), sizes=larger)))
    assert "640 MB" in size and size.endswith("| **not met** |")


def test_this_interpreter_is_described() -> None:
    facts = container.host_python()
    assert facts["python"].startswith("3.") and facts["libpython"] in ("shared", "linked in")
    assert float(facts["loop_us"]) > 0
    assert "'" not in container.PYTHON_FACTS  # it runs in the image as `python3 -c '...'`


def test_the_fastest_loop_of_the_runs_is_kept() -> None:
    runs = [{"python": "3.11.2", "loop_us": "148.9"}, {"python": "3.11.2", "loop_us": "78.8"}, {"python": "3.11.2"}]
    assert container.fastest(runs)["loop_us"] == "78.8"


def test_du_and_fact_lines_are_told_apart() -> None:
    output = "572000\t/\n28000\t/usr/lib/python3.11\nnproc=2\npython=3.11.2\ndu: cannot read\n"
    assert container.parse_du(output) == {"/": 572000, "/usr/lib/python3.11": 28000}
    assert container.parse_facts(output) == {"nproc": "2", "python": "3.11.2"}


def test_defaults_and_quick() -> None:
    full = container.arguments([])
    assert (full.repeat, full.startup_runs, full.workers, full.duration) == (3, 5, [1, 2], 10.0)
    quick = container.arguments(["--quick"])
    assert (quick.repeat, quick.startup_runs, quick.workers, quick.duration) == (1, 1, [1], 3.0)
    chosen = container.arguments(["--quick", "--repeat", "2", "--workers", "2,1", "--startup-runs", "0"])
    assert (chosen.repeat, chosen.workers, chosen.startup_runs) == (2, [1, 2], 0)


@pytest.mark.parametrize("text", ["", "0,1", "one"])
def test_worker_counts_are_positive_integers(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        container.worker_list(text)


def test_every_server_gets_the_same_settings() -> None:
    env = container.settings(2, 1)
    assert env["CLF_WORKERS"] == "2" and env["CLF_NATIVE_THREADS"] == "1"
    assert env["CLF_MODELS"] == "breast_cancer,digits,digit_attributes,digit_attributes_ovr,digit_groups"
    assert {container.variant(mode, 2).settings_env()["CLF_WORKERS"] for mode in container.MODES} == {"2"}
