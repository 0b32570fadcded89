"""Every measured figure a hand-written page quotes comes from a generated page that names its commit.

Measured figures are the ones only a run can give: throughput (`req/s`, `rows/s`, `items/s`), latency percentiles
(`p50 0.40 ms`, `p99 365 ms`) and measured ratios (`1.75x`). Settings and targets (`5 s`, `10 %`, `≤ 3× p50`) are
not. A generated page (`docs/benchmarks.md`, `docs/benchmarks-v2.md`, `docs/container.md`,
`docs/monitoring-quality.md`, `docs/soak.md`) says so in its opening and names the commit it was run at; a figure in
README.md or a hand-written page of docs/ must appear in one of them, so that re-running the benchmark and forgetting
the prose fails here.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.test_docs_links import PROJECT, pages, prose

GENERATED_OPENING = re.compile(r"^(Generated|Written) by `python -m bench")
COMMIT = re.compile(r"\bcommit\b[^0-9a-f]{0,8}([0-9a-f]{7,40})\b")
NUMBER = r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?"
MEASURED = (
    re.compile(rf"(?<![\w.,])({NUMBER})\s?(?:req/s|rows/s|items/s)\b"),
    re.compile(rf"\bp(?:50|99|99\.9)\s+(?:of\s+)?({NUMBER})\s?ms\b"),
    re.compile(r"(?<![\w.,])(\d+\.\d+)\s?[x×](?!\w)"),
)
INLINE_CODE = re.compile(r"`[^`]*`")


def is_generated(page: Path) -> bool:
    paragraphs = page.read_text(encoding="utf-8").split("\n\n", 2)
    return len(paragraphs) > 1 and bool(GENERATED_OPENING.match(paragraphs[1]))


def generated_pages(root: Path = PROJECT) -> list[Path]:
    return [page for page in pages(root) if is_generated(page)]


def hand_written_pages(root: Path = PROJECT) -> list[Path]:
    return [page for page in pages(root) if not is_generated(page)]


def measured_figures(text: str) -> list[tuple[int, str]]:
    """(line number, figure) of every measured figure in a page's prose; code spans and blocks are not prose."""
    found = []
    for number, line in prose(text):
        line = INLINE_CODE.sub("", line)
        for pattern in MEASURED:
            found.extend((number, match.group(1)) for match in pattern.finditer(line))
    return found


def figures_of(text: str) -> set[str]:
    """Every number a generated page holds, as written."""
    return set(re.findall(rf"(?<![\w.,])(?:{NUMBER})", text))


def test_generated_pages_are_found_and_name_their_commit() -> None:
    generated = generated_pages()
    assert {page.name for page in generated} >= {
        "benchmarks.md",
        "benchmarks-v2.md",
        "monitoring-quality.md",
        "soak.md",
        "container.md",
    }
    for page in generated:
        assert COMMIT.search(page.read_text(encoding="utf-8")), f"{page.name} does not name the commit it ran at"


@pytest.mark.parametrize("page", hand_written_pages(), ids=lambda page: page.name)
def test_every_measured_figure_is_in_a_generated_page(page: Path) -> None:
    known = set().union(*(figures_of(p.read_text(encoding="utf-8")) for p in generated_pages()))
    missing = [
        f"{page.name}:{line}: {figure}"
        for line, figure in measured_figures(page.read_text(encoding="utf-8"))
        if figure not in known
    ]
    assert not missing, "figures no generated page holds (re-run the benchmark, quote what it wrote):\n" + "\n".join(
        missing
    )


def test_measured_figures_are_told_from_settings_and_targets() -> None:
    text = "\n".join(
        [
            "2,552 req/s against 1,458; 92,525 rows/s and 7,312 items/s.",
            "p50 0.40 ms, p99 365 ms, p99.9 of 12.5 ms; 1.75x the baseline and 0.53× its p50.",
            "A 5 s timeout, 10 % sampled, p99 ≤ 3× p50, `CLF_WORKERS=2` at `3.5x` in code.",
        ]
    )
    assert [figure for _, figure in measured_figures(text)] == [
        "2,552",
        "92,525",
        "7,312",
        "0.40",
        "365",
        "12.5",
        "1.75",
        "0.53",
    ]
