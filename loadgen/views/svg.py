"""Figures as SVG with a value on hover, small enough to inline many in one page.

``tip(axis, x, y, text)`` puts an invisible hover target on a point or bar: the SVG written
then gives it a ``<title>``, which a browser shows as a tooltip; ``tip_artist`` titles a
bar or a line already drawn. ``inline(figure, prefix)``
returns the figure as an ``<svg>`` element for an HTML page: no XML prolog or metadata, and
every id prefixed so that figures sharing a page never resolve each other's references.
``save(figure, path)`` writes the same as a file of its own.

Text is kept as text (``svg.fonttype: none``), set in the viewer's own DejaVu Sans or
sans-serif: it halves a figure's size against glyphs drawn as paths, and stays selectable.
"""

from __future__ import annotations

import html
import io
import re
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
from matplotlib.figure import Figure  # noqa: E402

TIPS = "_hover_tips"  # the figure attribute holding {group id: tooltip}


def tip(axis: Any, x: float, y: float, text: str, size: float = 11) -> None:
    """A hover target over (x, y) in ``axis``'s data: an unpainted marker whose group the SVG
    gives ``text`` as its title (pointer events still reach an unpainted fill)."""
    (target,) = axis.plot([x], [y], marker="o", markersize=size, linestyle="none", alpha=0,
                          zorder=10)  # fmt: skip
    tip_artist(axis, target, text)


def tip_artist(axis: Any, artist: Any, text: str) -> None:
    """A hover title on an artist already drawn: a bar (one rectangle of ``axis.bar``), or a
    whole line where a title per point would weigh too much."""
    tips: dict[str, str] = axis.figure.__dict__.setdefault(TIPS, {})
    gid = f"hover{len(tips)}"
    artist.set_gid(gid)
    tips[gid] = text


def _svg(figure: Figure) -> str:
    buffer = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "udp-lab"}):
        figure.savefig(buffer, format="svg", metadata={"Date": None})
    text = buffer.getvalue()
    for gid, title in getattr(figure, TIPS, {}).items():
        opening = f'<g id="{gid}">'
        text = text.replace(opening, f"{opening}<title>{html.escape(title)}</title>", 1)
    return _compact(text)


def _rounded(match: re.Match) -> str:
    return re.sub(r"(\d\.\d\d)\d+", r"\1", match.group(0))


def _compact(svg: str) -> str:
    """A hundredth of a point is finer than any screen: coordinates rounded to it, and the
    indentation dropped, take a quarter off a figure of many bars."""
    svg = re.sub(r'\b(d|x|y|width|height|x1|x2|y1|y2)="[^"]*"', _rounded, svg)
    return re.sub(r"\n\s+", "\n", svg)


def save(figure: Figure, path: Path) -> None:
    """The figure as an SVG file, hover titles included."""
    Path(path).write_text(_svg(figure), encoding="utf-8")


def inline(figure: Figure, prefix: str) -> str:
    """The figure as an ``<svg>`` element for an HTML page (see the module docstring)."""
    return _inlined(_svg(figure), prefix)  # compact already


def inline_text(svg: str, prefix: str) -> str:
    """An SVG file's text made ready to inline (an older file compacted too); ValueError for
    text that holds no ``<svg>``."""
    if "<svg" not in svg:
        raise ValueError("not an SVG file (no <svg> element)")
    return _inlined(_compact(svg), prefix)


def _inlined(svg: str, prefix: str) -> str:
    """Prolog and metadata dropped, every id prefixed with ``prefix``."""
    svg = svg[svg.index("<svg") :]
    svg = re.sub(r"\s*<metadata>.*?</metadata>", "", svg, count=1, flags=re.DOTALL)
    svg = re.sub(r'\bid="([^"]+)"', rf'id="{prefix}-\1"', svg)
    svg = re.sub(r'href="#([^"]+)"', rf'href="#{prefix}-\1"', svg)
    return re.sub(r"url\(#([^)]+)\)", rf"url(#{prefix}-\1)", svg)
