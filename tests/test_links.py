"""The documentation's relative links lead somewhere, and the README stays a short guide.

Every Markdown link and image (``[text](target)``, ``![alt](target)``) in README.md, docs/ and
lessons/ whose target is a path, not a web address, a mail address or an anchor on the same
page, must name a file or folder that exists, relative to the file holding the link (a
``#fragment`` is not checked). No network, no server.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from helpers import ROOT

# [text](target) or ![alt](target); the text may hold one level of brackets (a badge, code)
# and span lines; the target ends at whitespace (an optional "title" follows) or ")".
LINK = re.compile(
    r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]"  # [text] or ![alt]
    r"\(\s*<?([^)\s>]+)>?"  # (target or (<target>
    r"(?:\s+(?:\"[^\"]*\"|'[^']*'|\([^)]*\)))?\s*\)"  # an optional title, then )
)
FENCE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)
CODE_SPAN = re.compile(r"`(?:[^`\n]|\n(?![ \t]*\n))*`")  # within one paragraph
EXTERNAL = ("http://", "https://", "mailto:")
README_MAX_LINES = 200
LAYOUT_HEADING = "## Repository layout"
LAYOUT_WITHIN = 80


def documents() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")),
            *sorted((ROOT / "lessons").glob("*.md"))]  # fmt: skip


def prose(text: str) -> str:
    """The text without fenced blocks, indented code blocks (four spaces, after a blank line)
    and code spans, where a link is shown, not made."""
    kept, in_code, previous = [], False, ""
    for line in FENCE.sub("", text).splitlines():
        indented = line.startswith("    ")
        in_code = indented and (in_code or not previous.strip())
        if not in_code:
            kept.append(line)
        previous = line
    return CODE_SPAN.sub("", "\n".join(kept))


def relative_targets(text: str) -> list[str]:
    """Every link and image target in the text that names a path, without its fragment."""
    targets = []
    for match in LINK.finditer(prose(text)):
        target = match.group(1)
        if target.startswith(EXTERNAL) or target.startswith("#"):
            continue
        targets.append(target.split("#", 1)[0])
    return targets


def broken_links(document: Path) -> list[str]:
    """The targets in the document that name nothing, relative to its folder."""
    targets = relative_targets(document.read_text(encoding="utf-8"))
    return [target for target in targets if not (document.parent / target).exists()]


def test_the_documents_are_there() -> None:
    names = {path.relative_to(ROOT).as_posix() for path in documents()}
    assert {"README.md", "lessons/README.md", "docs/measurements.md"} <= names


@pytest.mark.parametrize(
    "document", documents(), ids=lambda path: path.relative_to(ROOT).as_posix()
)
def test_every_relative_link_leads_to_a_file(document: Path) -> None:
    assert broken_links(document) == []


def test_a_broken_link_is_found(tmp_path: Path) -> None:
    (tmp_path / "there.md").write_text("# There\n", encoding="utf-8")
    (tmp_path / "figure.png").write_bytes(b"")
    page = tmp_path / "page.md"
    page.write_text(
        "See [there](there.md#a-section), ![a figure](figure.png), [the web](https://example.org),"
        " [mail](mailto:a@example.org) and [above](#top), but [gone](missing/page.md) and"
        " ![no figure](lost.png 'a title') and [two\nlines](nowhere.md).\n"
        "`[shown](not-a-link.md)`\n\n    [indented](code-block.md)\n",
        encoding="utf-8",
    )
    assert broken_links(page) == ["missing/page.md", "lost.png", "nowhere.md"]


def test_the_readme_is_short_and_shows_the_layout_early() -> None:
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES
    assert LAYOUT_HEADING in lines[:LAYOUT_WITHIN]
