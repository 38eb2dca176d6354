"""The pieces report.html is made of: escaped text, tables, figures, folded sections.

Every function returns HTML text with what it was given escaped, except ``svg`` and ``body``
arguments, which are markup already (from ``loadgen.views.svg.inline`` or these functions).
A ``Section`` is one folded part of the page: ``fold(section)`` draws it as a ``<details>``
whose summary line is its title and its one-line note; a link to ``#ID-body`` opens it.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Section:
    """One folded part of report.html: an anchor id, a title, a line shown while folded, and
    the markup shown when opened."""

    id: str
    title: str
    note: str
    body: str
    open: bool = False


def text(value: object) -> str:
    return html.escape(str(value), quote=True)


def with_code(sentence: str) -> str:
    """A sentence escaped, its `backticked` parts set as code (the findings' one markup)."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", text(sentence))


def sentences(lines: Iterable[str], tag: str = "ul") -> str:
    """Sentences as a list, one item each."""
    items = "".join(f"<li>{with_code(line)}</li>" for line in lines)
    return f"<{tag}>{items}</{tag}>" if items else ""


def table(header: list[str], rows: Iterable[Iterable[object]], numeric_from: int = 1) -> str:
    """A table; columns from ``numeric_from`` on are numbers, set right-aligned."""

    def cells(row: Iterable[object], tag: str) -> str:
        return "".join(f'<{tag}{" class=n" if i >= numeric_from else ""}>{text(v)}</{tag}>'
                       for i, v in enumerate(row))  # fmt: skip

    body = "".join(f"<tr>{cells(row, 'td')}</tr>" for row in rows)
    return f"<table><thead><tr>{cells(header, 'th')}</tr></thead><tbody>{body}</tbody></table>"


def figure(svg: str, caption: str, id: str = "") -> str:
    """An inline SVG figure with its caption (``id``: an anchor to it)."""
    anchor = f' id="{text(id)}"' if id else ""
    return f"<figure{anchor}>{svg}<figcaption>{text(caption)}</figcaption></figure>"


def fold(section: Section) -> str:
    """A section as ``<details>``: folded unless ``section.open``, its note beside the title."""
    note = f' <span class="note">{text(section.note)}</span>' if section.note else ""
    attributes = f' id="{text(section.id)}"' + (" open" if section.open else "")
    # A link to "#ID-body" opens the section: a browser reveals a closed <details> to show an
    # element inside it that a link names, but not the <details> itself.
    body = f'<div id="{text(section.id)}-body" class=body>{section.body}</div>'
    summary = f"<summary><h2>{text(section.title)}</h2>{note}</summary>"
    return f"<details{attributes}>{summary}{body}</details>"
