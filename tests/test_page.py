"""report.html: one self-contained page, the lesson and the cores figure first, the rest folded."""

from __future__ import annotations

import re
import shutil
from html.parser import HTMLParser

import pytest
from helpers import ROOT

from loadgen.analysis.results import load
from loadgen.analysis.summary import Summary
from loadgen.views import markup, svg
from loadgen.views.lesson import lesson
from loadgen.views.page import write_html

REFERENCE = ROOT / "results" / "reference"


class Outline(HTMLParser):
    """What a reader's browser would see of the page's structure."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.ids: list[str] = []
        self.references: list[str] = []  # href="#x" and url(#x): ids that must exist
        self.outside: list[str] = []  # anything that would make the browser ask elsewhere

    def handle_starttag(self, tag: str, attrs: list) -> None:
        found = dict(attrs)
        self.tags.append((tag, found))
        if "id" in found:
            self.ids.append(found["id"])
        for name, value in found.items():
            value = value or ""
            if name in ("href", "xlink:href", "src") and not value.startswith("#"):
                self.outside.append(f"{tag} {name}={value}")
            elif name in ("href", "xlink:href"):
                self.references.append(value[1:])
            self.references += re.findall(r"url\(#([^)]+)\)", value)
            if re.search(r"url\((?!#)", value):
                self.outside.append(f"{tag} {name}={value}")


@pytest.fixture(scope="module")
def page(tmp_path_factory) -> str:
    """report.html written for the reference run, with a soak and a mixed run beside it."""
    folder = tmp_path_factory.mktemp("reference")
    for name in ("results.json", "timeline.json", "timeline.svg"):
        shutil.copy(REFERENCE / name, folder / name)
    shutil.copy(ROOT / "results" / "mixed" / "mixed.json", folder / "mixed.json")
    shutil.copy(ROOT / "tests" / "data" / "soak-sample.json", folder / "soak.json")
    assert write_html(folder / "results.json") == folder / "report.html"
    return (folder / "report.html").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def outline(page) -> Outline:
    parsed = Outline()
    parsed.feed(page)
    return parsed


@pytest.mark.slow  # draws a whole page: seconds
def test_the_page_asks_nothing_of_the_network_and_every_reference_resolves(page, outline):
    assert page.startswith("<!DOCTYPE html>") and len(page.encode()) < 2_000_000
    assert outline.outside == []
    assert not re.search(r"<(script|link|img|iframe)\b", page)
    assert len(outline.ids) == len(set(outline.ids)), "ids repeated across figures"
    assert set(outline.references) <= set(outline.ids)
    assert outline.references  # the figures do use their own definitions


@pytest.mark.slow  # draws a whole page: seconds
def test_the_lesson_and_the_cores_figure_come_first(page):
    summary = Summary(load(REFERENCE / "results.json"))
    said = lesson(summary)
    first = page.index('<section id="lesson">')
    assert first < page.index('<figure id="fig-cores">') < page.index("<details")
    lesson_html = page[first : page.index("</section>", first)]
    assert 1 <= lesson_html.count("<li>") == len(said) <= 6
    assert markup.with_code(said[0]) in lesson_html


@pytest.mark.slow  # draws a whole page: seconds
def test_each_workload_is_a_folded_section_with_its_table_figures_and_findings(page, outline):
    summary = Summary(load(REFERENCE / "results.json"))
    sections = [attrs for tag, attrs in outline.tags if tag == "details"]
    assert all("open" not in attrs for attrs in sections)
    ids = [attrs["id"] for attrs in sections]
    for work in summary.works():
        section = f"work-{re.sub(r'[^a-z0-9]+', '-', work.spec.lower())}"
        assert section in ids
        body = page[page.index(f'<details id="{section}">') :]
        body = body[: body.index("</details>")]
        assert "<table>" in body and body.count("<svg") >= 2 and "<li>" in body
        assert f"With {work.spec}" in body
    assert {"scaling", "timeline", "machine", "measured"} <= set(ids)


@pytest.mark.slow  # draws a whole page: seconds
def test_points_and_bars_carry_their_values_on_hover(page):
    titles = re.findall(r"<title>([^<]*)</title>", page)
    assert any(re.search(r", \d+ clients: [\d,]+ replies/s \(trials", t) for t in titles)
    assert any(re.search(r": \d\.\d\d cores \(trials", t) for t in titles)  # the cores bars
    assert any("p99:" in t for t in titles)  # a spectrum line's percentiles


@pytest.mark.slow  # draws a whole page: seconds
def test_the_other_experiments_beside_the_results_follow_the_machine(page):
    assert '<figure id="fig-timeline">' in page
    assert page.index('<details id="machine">') < page.index('<details id="soak">') < page.index(
        '<details id="mixed">') < page.index('<details id="measured">')  # fmt: skip


def test_inlined_figures_keep_their_ids_to_themselves():
    one = svg.inline_text('<?xml?><svg><defs><path id="m1"/></defs><use href="#m1"/>'
                          '<g clip-path="url(#p2)"/></svg>', "a")  # fmt: skip
    assert one == ('<svg><defs><path id="a-m1"/></defs><use href="#a-m1"/>'
                   '<g clip-path="url(#a-p2)"/></svg>')  # fmt: skip


def test_markup_escapes_what_it_is_given():
    assert markup.table(["<a>"], [["x&y", 1]]) == (
        "<table><thead><tr><th>&lt;a&gt;</th></tr></thead>"
        "<tbody><tr><td>x&amp;y</td><td class=n>1</td></tr></tbody></table>"
    )
    assert markup.with_code("run `make <x>`") == "run <code>make &lt;x&gt;</code>"


def test_a_timeline_drawing_that_is_not_svg_is_named_and_the_page_still_written(tmp_path):
    from loadgen.views.page import timeline_section

    (tmp_path / "timeline.svg").write_bytes(b"\x89PNG not an svg")
    section = timeline_section(tmp_path, None)
    assert section and "timeline.svg could not be shown" in section.body
