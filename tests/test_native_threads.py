"""Each worker caps its BLAS and OpenMP threads so that workers x threads fits the CPUs.

Checked in a fresh interpreter: native thread pools are process state, and the in-process service of other tests
has set them already.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parents[1]
CHECK = textwrap.dedent(
    """
    import json, os, sys
    from concurrent.futures import ThreadPoolExecutor
    from threadpoolctl import threadpool_info
    import numpy, sklearn.ensemble  # load OpenBLAS and OpenMP before the limit, as a worker has
    from service.serving import limit_native_threads
    from service.settings import Settings

    os.sched_getaffinity = lambda pid: set(range(int(sys.argv[1])))
    settings = Settings(workers=int(sys.argv[2]))
    pools = lambda: sorted({(p["user_api"], p["num_threads"]) for p in threadpool_info()})
    limited = limit_native_threads(settings)
    with ThreadPoolExecutor(1, initializer=limit_native_threads, initargs=(settings,)) as executor:
        inference = executor.submit(pools).result()
    print(json.dumps({"limited": limited, "main": pools(), "inference": inference}))
    """
)


def limits(cpus: int, workers: int, **env: str) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", CHECK, str(cpus), str(workers)],
        cwd=PROJECT,
        env={"PATH": "/usr/bin:/bin", **env},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout)
    return result


@pytest.mark.parametrize(("cpus", "workers", "threads"), [(2, 2, 1), (2, 1, 2), (2, 3, 1)])
def test_workers_times_threads_fit_the_cpus_in_the_main_and_the_inference_thread(
    cpus: int, workers: int, threads: int
) -> None:
    result = limits(cpus, workers)
    assert result["limited"] == threads
    for thread in ("main", "inference"):  # OpenMP's limit is per thread: the inference thread sets its own
        assert {count for _, count in result[thread]} == {threads}, result  # type: ignore[attr-defined]


def test_the_setting_overrides_the_rule() -> None:
    result = limits(2, 1, CLF_NATIVE_THREADS="1")
    assert result["limited"] == 1
    assert {count for _, count in result["inference"]} == {1}  # type: ignore[attr-defined]
