"""Every relative link of README.md and docs/*.md names a file of the checkout, and every `#anchor` a heading.

Anchors follow GitHub's heading slugs: the heading's text (inline code, emphasis and links reduced to their text)
lowercased, every character but letters, digits, `_`, `-` and spaces dropped, spaces turned into hyphens; a slug
already taken on the page gets `-1`, `-2`, ... Links inside code (fenced blocks, inline spans) are not links, and
http(s) and mailto links are not fetched.
"""

from __future__ import annotations

import re
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$")
INLINE_CODE = re.compile(r"(`+)(.+?)\1")
LINK = re.compile(r"!?\[((?:[^\[\]]|\[[^\[\]]*\])*)\]\(\s*<?([^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE = re.compile(r"^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s.*)?$")
HTML_ANCHOR = re.compile(r"<a\s[^>]*(?:name|id)=\"([^\"]+)\"")
EXTERNAL = ("http://", "https://", "mailto:")


def pages(root: Path = PROJECT) -> list[Path]:
    """README.md and every page of docs/, hand-written and generated."""
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


def prose(text: str) -> list[tuple[int, str]]:
    """The lines outside fenced code blocks, numbered from 1."""
    kept, fence = [], ""
    for number, line in enumerate(text.splitlines(), 1):
        opening = FENCE.match(line)
        if fence:
            closing = opening and opening.group(1)[0] == fence[0] and len(opening.group(1)) >= len(fence)
            if closing and not line.strip().strip(fence[0]):
                fence = ""
            continue
        if opening:
            fence = opening.group(1)
            continue
        kept.append((number, line))
    return kept


def slug(heading: str) -> str:
    """GitHub's anchor for a heading's text (before the -1, -2 of repeated headings)."""
    text = INLINE_CODE.sub(lambda m: m.group(2), heading)
    text = LINK.sub(lambda m: m.group(1), text)
    text = re.sub(r"<[^>]+>", "", text).lower()
    text = "".join(c for c in text if c.isalnum() or c in "_- ")
    return text.replace(" ", "-")


def anchors(text: str) -> set[str]:
    """Every anchor a page has: its headings' slugs, repeated ones numbered, and explicit `<a name|id>` anchors."""
    found: set[str] = set()
    seen: dict[str, int] = {}
    for _, line in prose(text):
        heading = HEADING.match(line)
        if heading:
            base = slug(heading.group(2))
            count = seen.get(base, 0)
            seen[base] = count + 1
            found.add(base if count == 0 else f"{base}-{count}")
        found.update(HTML_ANCHOR.findall(line))
    return found


def links(text: str) -> list[tuple[int, str]]:
    """(line, target) of every inline and reference-definition link outside code."""
    found = []
    for number, line in prose(text):
        bare = INLINE_CODE.sub(lambda m: "x" * len(m.group(0)), line)
        found += [(number, m.group(2)) for m in LINK.finditer(bare)]
        reference = REFERENCE.match(bare)
        if reference:
            found.append((number, reference.group(1)))
    return found


def broken_links(root: Path, checked: list[Path]) -> list[str]:
    """`page:line: target (why)` for each link of the pages that names no file of `root` or no anchor of its page."""
    root, problems, known = root.resolve(), [], {}
    for page in (page.resolve() for page in checked):
        text = page.read_text()
        for number, target in links(text):
            if target.startswith(EXTERNAL):
                continue
            path, _, anchor = target.partition("#")
            where = f"{page.relative_to(root)}:{number}: {target}"
            linked = (page.parent / path).resolve() if path else page
            if not linked.is_relative_to(root) or not linked.exists():
                problems.append(f"{where} (no such file in the checkout)")
                continue
            if not anchor or linked.suffix != ".md":
                continue
            if linked not in known:
                known[linked] = anchors(linked.read_text())
            if anchor not in known[linked]:
                problems.append(f"{where} (no heading of {linked.relative_to(root)} has this anchor)")
    return problems


def test_every_link_of_the_docs_resolves() -> None:
    checked = pages()
    assert len(checked) >= 8  # README and docs/: api, loop, monitoring, operations, performance, deploy, layout, ...
    assert broken_links(PROJECT, checked) == []


def test_slugs_are_githubs() -> None:
    assert slug("Rows a model cannot score, timeouts, `top_k`") == "rows-a-model-cannot-score-timeouts-top_k"
    assert slug("`GET /models/{name}/performance?since=…&until=…`") == "get-modelsnameperformancesinceuntil"
    assert slug("Faults: bad artifacts, dead workers, a stop") == "faults-bad-artifacts-dead-workers-a-stop"
    assert slug("Does it detect silent failures? `make scorecard`") == "does-it-detect-silent-failures-make-scorecard"
    assert slug("See [the API](api.md) *now*") == "see-the-api-now"
    page = "# A\n## Notes\n```sh\n# Notes\n```\n## Notes\n### Notes ##\n"
    assert anchors(page) == {"a", "notes", "notes-1", "notes-2"}


def test_the_checker_fails_on_broken_links(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "README.md").write_text(
        "# Title\n\n## Two words\n\n## Two words\n\n"
        "[ok](#two-words) [ok](#two-words-1) [ok](docs/page.md#a-page) [ok](https://example.com/#nowhere)\n"
        "[bad anchor](#two-words-2) [bad file](docs/missing.md) [bad page anchor](docs/page.md#nowhere)\n"
        "`[code](docs/missing.md)` and\n```md\n[fenced](docs/missing.md)\n```\n"
        "[ref]: docs/gone.md\n"
    )
    (tmp_path / "docs" / "page.md").write_text(
        "# A page\n\n[up](../README.md#title) [out of the checkout](../../elsewhere.md) [self](#a-page) [x](#b)\n"
    )
    assert broken_links(tmp_path, pages(tmp_path)) == [
        "README.md:8: #two-words-2 (no heading of README.md has this anchor)",
        "README.md:8: docs/missing.md (no such file in the checkout)",
        "README.md:8: docs/page.md#nowhere (no heading of docs/page.md has this anchor)",
        "README.md:13: docs/gone.md (no such file in the checkout)",
        "docs/page.md:3: ../../elsewhere.md (no such file in the checkout)",
        "docs/page.md:3: #b (no heading of docs/page.md has this anchor)",
    ]
