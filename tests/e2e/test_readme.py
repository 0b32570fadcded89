"""The shell commands of README and docs/, run as written: a new user's first hour, checked.

Convention: every ```sh and ```console block of README.md and of every hand-written page of docs/ (all but the
generated ones, `GENERATED`) has, on the line right above it, one of
    <!-- readme-test: run -->                 this test runs each of its commands, in reading order: README's first,
                                              then the pages of docs/ by name (`PAGES`);
    <!-- readme-test: not run: REASON -->     it does not, and REASON says why (and what tests it instead).
A `sh` block's commands are its lines (a line ending in `\\` goes on on the next; `#` lines are comments), and its
output as the page shows it is the ```json block right below it, if any. A `console` block's commands are its `$ `
lines, each followed by its output.

How they run, as in a fresh clone:
- from a temporary folder holding the checkout's `.venv` and a copy of `examples/`, with `BENTOML_HOME` and
  `CLF_DATA_DIR` pointing at temporary folders; the store holds the default catalog, as `make catalog` leaves it;
- `make serve` (with its `CLF_*=value` settings) starts `bentoml serve` on that store and data folder, as the Makefile
  does, in place of the server before it; a command that reaches `localhost:3000` or `127.0.0.1:3000` before any
  `make serve` gets the catalog served as `make serve` serves it; both addresses are the server's;
- each command runs in its own bash, which starts with the exit status of the command before (so `echo $?` means
  what it means in a terminal), with `curl` failing on an HTTP error (`--fail-with-body`); each must exit 0;
- the outputs shown come from one run on another store: the store versions and prediction keys an output shows stand
  for those this run printed at the same place, in later commands and in `examples/`'s files alike.

The other tests check what running cannot: every marker is there, no shell block runs another `python` than
`.venv/bin/python`, every example prediction id is one the service could issue, no page links outside the checkout,
and README links every page (tests/test_docs_links.py checks that every link and anchor resolves).
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bench.servers import PROJECT
from service.feedback.ids import parse_id
from tests.e2e.conftest import SERVER_LOGS, log_tails, serving

pytestmark = pytest.mark.e2e

README = PROJECT / "README.md"
# written by `make bench`, `make scorecard` and `make soak`: no commands of theirs to run
GENERATED = ("benchmarks.md", "benchmarks-v2.md", "monitoring-quality.md", "soak.md", "container.md")
PAGES = [README, *sorted(p for p in (PROJECT / "docs").glob("*.md") if p.name not in GENERATED)]
EXAMPLES = PROJECT / "examples"
SHELL_FENCES = ("sh", "console", "bash", "shell")
MARKER = re.compile(r"<!-- readme-test: (run|not run: .+) -->")
MAKE_SERVE = re.compile(r"^((?:CLF_\w+=\S+\s+)*)make serve\b")
README_ADDRESSES = ("localhost:3000", "127.0.0.1:3000")
CURL_FAILS_ON_HTTP_ERRORS = 'curl() { command curl --fail-with-body "$@"; }'
COMMAND_TIMEOUT_S = 900  # one command: a retrain on a loaded 2-core machine has taken minutes
# what an output shows that differs from run to run: store versions and prediction keys
VERSION = re.compile(r'(?:"(?:version|previous)":\s*"|\b[a-z_]+:)([a-z0-9]{16})\b')
PREDICTION_KEY = re.compile(r"\b([0-9a-f]{32})-\d+\b")
EXAMPLE_ID = re.compile(r"\b[0-9a-f]{16,}-\d+\b")  # anything shaped like a prediction id, right or wrong


@dataclass(frozen=True)
class Command:
    text: str
    shown: str  # its output as the page shows it ("" when none)


@dataclass(frozen=True)
class Block:
    line: int  # of the opening fence, 1-based
    fence: str
    marker: str | None  # "run", "not run: ...", or None when missing
    commands: list[Command]

    @property
    def runs(self) -> bool:
        return self.marker == "run"


def fenced(text: str) -> list[tuple[int, str, list[str], str | None]]:
    """Every fenced block: (line of its opening fence, language, its lines, the marker above it)."""
    lines, found, i = text.splitlines(), [], 0
    while i < len(lines):
        if lines[i].startswith("```"):
            start, fence = i, lines[i][3:].strip()
            end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
            marker = MARKER.fullmatch(lines[i - 1].strip()) if i > 0 else None
            found.append((start + 1, fence, lines[start + 1 : end], marker.group(1) if marker else None))
            i = end
        i += 1
    return found


def shell_blocks(text: str) -> list[Block]:
    blocks = fenced(text)
    found = []
    for n, (line, fence, body, marker) in enumerate(blocks):
        if fence not in SHELL_FENCES:
            continue
        if fence == "console":
            commands = _console(body)
        else:
            following = blocks[n + 1] if n + 1 < len(blocks) else None
            shown = following is not None and following[1] == "json" and following[0] == line + len(body) + 2
            output = "\n".join(following[2]) if shown and following is not None else ""
            commands = [Command(c, output) for c in _joined(body)]
        found.append(Block(line, fence, marker, commands))
    return found


def page_blocks() -> list[tuple[str, Block]]:
    """Every shell block of `PAGES`, in reading order, with its page's path in the checkout."""
    return [(str(page.relative_to(PROJECT)), block) for page in PAGES for block in shell_blocks(page.read_text())]


def _joined(body: list[str]) -> list[str]:
    """A `sh` block's commands: lines joined at a trailing backslash, blank and comment lines left out."""
    commands, current = [], ""
    for line in body:
        current += line[:-1] + " " if line.endswith("\\") else line
        if line.endswith("\\"):
            continue
        if current.strip() and not current.lstrip().startswith("#"):
            commands.append(current.strip())
        current = ""
    return commands


def _console(body: list[str]) -> list[Command]:
    commands: list[Command] = []
    text, output, continued = "", [], False
    for line in body:
        if continued or line.startswith("$ "):
            if not continued and text:
                commands.append(Command(text, "\n".join(output)))
                output = []
            text = (text + " " if continued else "") + (line if continued else line[2:]).rstrip("\\").strip()
            continued = line.endswith("\\")
        else:
            output.append(line)
    if text:
        commands.append(Command(text, "\n".join(output)))
    return commands


# --- what running cannot check ---------------------------------------------------------------------------------


def test_every_shell_block_says_whether_this_test_runs_it() -> None:
    blocks = page_blocks()
    unmarked = [f"{page}:{block.line}" for page, block in blocks if block.marker is None]
    assert not unmarked, f"{unmarked}: add <!-- readme-test: run --> or <!-- readme-test: not run: why -->"
    assert sum(block.runs for _, block in blocks) >= 8  # walkthroughs: requests, training, the loop, feedback, export
    assert sum(block.runs for page, block in blocks if page == "README.md") >= 4  # one request per task kind


def test_generated_pages_are_the_ones_that_say_so() -> None:
    """A page a generator writes says so at its top and has no commands of its own to run; no other page says so."""
    for page in sorted((PROJECT / "docs").glob("*.md")):
        says = "do not edit by hand" in "\n".join(page.read_text().splitlines()[:5]).lower()
        assert says == (page.name in GENERATED), page.name


def test_shell_blocks_run_the_checkouts_python() -> None:
    """`python -m ...` works only in an activated virtualenv: the pages' commands name `.venv/bin/python`."""
    bare = [
        (page, block.line, command.text)
        for page, block in page_blocks()
        for command in block.commands
        if re.search(r"(?<![\w/.-])python3?\s", command.text)
    ]
    assert bare == []


def test_example_prediction_ids_are_ids_the_service_issues() -> None:
    """An id of the pages or `examples/` has the service's layout (32 hex digits, UUIDv7's version and variant, the
    logged bit set), so pasting it tells `unknown_prediction` from a malformed id as a real one would."""
    pages = {str(page.relative_to(PROJECT)): page.read_text() for page in PAGES}
    texts = {**pages, **{f"examples/{p.name}": p.read_text() for p in EXAMPLES.glob("*.json")}}
    found = {(where, example) for where, text in texts.items() for example in EXAMPLE_ID.findall(text)}
    assert len(found) >= 8
    wrong = sorted((where, example) for where, example in found if (ref := parse_id(example)) is None or not ref.logged)
    assert wrong == []


def test_readme_links_every_page_and_no_page_leaves_the_checkout() -> None:
    """A clone has only itself: no page names the steering folder's files; README leads to every page of docs/."""
    links = re.findall(r"\]\(([^)\s#]+)[^)\s]*\)", README.read_text())
    assert {f"docs/{page.name}" for page in (PROJECT / "docs").glob("*.md")} <= set(links)
    for page in PAGES:
        text = page.read_text()
        assert "../shared" not in text and "CONTRACT.md" not in text, page.name


# --- running them --------------------------------------------------------------------------------------------


class Walkthrough:
    """The pages' commands in a fresh folder, one store and one data folder, one server at a time."""

    def __init__(self, e2e_env: dict[str, str], root: Path, servers: contextlib.ExitStack) -> None:
        self.folder, self.home = root / "clone", root / "home"
        self.folder.mkdir()
        (self.folder / ".venv").symlink_to(PROJECT / ".venv")
        shutil.copytree(EXAMPLES, self.folder / "examples")
        shutil.copytree(Path(e2e_env["BENTOML_HOME"]) / "models", self.home / "models")  # as `make catalog` leaves it
        self.e2e_env = e2e_env
        self.env = {**e2e_env, "BENTOML_HOME": str(self.home), "CLF_DATA_DIR": str(self.home / "data")}
        self.servers = servers
        self.server: contextlib.ExitStack | None = None
        self.address = ""
        self.seen: dict[str, str] = {}  # a page's version or prediction key -> this run's
        self.status = 0  # the last command's exit status
        self.ran: list[str] = []

    def serve(self, settings: str) -> None:
        """What `make serve` does once the catalog is in the store: `bentoml serve` with these CLF_* settings."""
        if self.server is not None:
            self.server.close()
        given = dict(setting.split("=", 1) for setting in settings.split())
        self.server = self.servers.enter_context(contextlib.ExitStack())
        clf = {name.removeprefix("CLF_").lower(): value for name, value in given.items()}
        url = self.server.enter_context(serving(self.e2e_env, self.home, **clf))
        self.address = url.removeprefix("http://")

    def run(self, command: Command) -> None:
        started = time.monotonic()
        serve = MAKE_SERVE.match(command.text)
        if serve:
            self.serve(serve.group(1))
            self.ran.append(f"{time.monotonic() - started:6.1f} s  {command.text}")
            return
        text = self.substituted(command.text)
        if any(address in command.text for address in README_ADDRESSES):
            if not self.address:
                self.serve("")
            for address in README_ADDRESSES:
                text = text.replace(address, self.address)
        self.write_examples()
        script = f"set -o pipefail\n{CURL_FAILS_ON_HTTP_ERRORS}\n(exit {self.status})\n{text}"
        done = subprocess.run(
            ["bash", "-c", script], cwd=self.folder, env=self.env, capture_output=True, text=True,
            timeout=COMMAND_TIMEOUT_S,
        )  # fmt: skip
        if done.returncode != 0:
            pytest.fail(
                f"documented command exited {done.returncode}: {command.text}\n(ran as: {text})\n--- stdout\n"
                f"{done.stdout[-3000:]}\n--- stderr\n{done.stderr[-3000:]}{log_tails(SERVER_LOGS.items())}"
            )
        self.status = done.returncode
        self.learn(command, done.stderr + done.stdout)
        self.check_answer(command, done.stdout)
        self.ran.append(f"{time.monotonic() - started:6.1f} s  {command.text}")

    def substituted(self, text: str) -> str:
        for shown, actual in self.seen.items():
            text = text.replace(shown, actual)
        return text

    def write_examples(self) -> None:
        """`examples/`'s files with this run's versions and prediction keys for the pages'."""
        for path in EXAMPLES.iterdir():
            (self.folder / "examples" / path.name).write_text(self.substituted(path.read_text()))

    def learn(self, command: Command, output: str) -> None:
        """Pair the versions and prediction keys a page shows in this command's output with this run's, in order."""
        for pattern in (VERSION, PREDICTION_KEY):
            shown, actual = _distinct(pattern.findall(command.shown)), _distinct(pattern.findall(output))
            if not shown:
                continue
            assert len(shown) == len(actual), f"the page shows {shown} after `{command.text}`; this run: {actual}"
            for readme_value, run_value in zip(shown, actual, strict=True):
                known = self.seen.setdefault(readme_value, run_value)
                assert known == run_value, f"the pages' {readme_value} stands for both {known} and {run_value}"

    def check_answer(self, command: Command, output: str) -> None:
        """Where a page shows a JSON answer, this run's has the same fields and accepts as many feedback items."""
        try:
            shown = json.loads(command.shown)
        except ValueError:
            return
        if not isinstance(shown, dict):
            return
        answer = json.loads(output)
        assert set(answer) == set(shown), f"`{command.text}` answered {output}"
        assert answer.get("accepted") == shown.get("accepted"), f"`{command.text}` answered {output}"


def _distinct(values: list[str]) -> list[str]:
    return list(dict.fromkeys(values))


@pytest.fixture
def walkthrough(e2e_env: dict[str, str], tmp_path: Path) -> Iterator[Walkthrough]:
    with contextlib.ExitStack() as servers:
        yield Walkthrough(e2e_env, tmp_path, servers)


def test_readme_commands_run_as_written(walkthrough: Walkthrough) -> None:
    blocks = [block for _, block in page_blocks()]
    for block in blocks:
        if block.runs:
            for command in block.commands:
                walkthrough.run(command)
    expected = [command.text for block in blocks if block.runs for command in block.commands]
    assert [line.split(" s  ", 1)[1] for line in walkthrough.ran] == expected
    # README's requests reached a server, and docs/loop.md's CLI walkthrough ran
    assert any(text.startswith("curl") for text in expected)
    assert any(text.startswith(".venv/bin/python -m models train") for text in expected)
    print(f"ran {len(walkthrough.ran)} documented commands", *walkthrough.ran, sep="\n  ")
