"""report.html in a real browser: headless Chromium (loadgen.views.browser) opens the report of
the tiny bench, and a handmade page that keeps the same contract, and checks what a reader gets.

The contract a report page keeps: an ``<h1>`` headline; ``section#lesson``, a ``<ul>`` of one to
six sentences; figures as ``<figure id="fig-NAME">`` holding an inline ``<svg>`` and a
``<figcaption>``, the cores figure (``figure#fig-cores``) right after the lesson, the two within
the first screen at 1280x900; the rest in folded ``<details id=...><summary>`` sections. Nothing
is fetched: the page is one self-contained file, and nothing it runs reports an error.

Every test here needs Chromium and is skipped, saying so, where there is none (make installs
Debian's where it is root). The handmade page shows the checks pass on a page that keeps the
contract; the driver's own test shows they fail on one that breaks it.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import psutil
import pytest
from helpers import wait_gone
from matplotlib.figure import Figure
from PIL import Image

from loadgen.__main__ import main
from loadgen.views import browser as driver
from loadgen.views import svg
from loadgen.views.browser import Browser

CHROMIUM = driver.find_chromium()
WIDTH, HEIGHT = 1280, 900  # the first screen: a laptop's browser window
NO_CHROMIUM = "no Chromium here (apt-get install chromium; make does, as root)"


def in_browser(test):
    """A test that starts Chromium: slow (a second or so), skipped where there is none."""
    return pytest.mark.slow(pytest.mark.skipif(CHROMIUM is None, reason=NO_CHROMIUM)(test))


STYLE = """body { font: 16px/1.4 sans-serif; max-width: 60rem; margin: 1rem auto; }
figure { margin: 0.5rem 0; } figure svg { max-width: 100%; height: auto; }
summary h2 { display: inline; font-size: 1.2rem; }"""


def _svg_figure(name: str, bars: bool) -> str:
    """A figure as the views draw one: matplotlib's SVG with hover titles, and a caption."""
    figure = Figure(figsize=(6.4, 3.6))
    axis = figure.add_subplot()
    xs, ys = [1, 2, 3, 4], [410, 790, 800, 805]
    if bars:
        for x, y in zip(xs, ys, strict=True):
            svg.tip_artist(axis, axis.bar([x], [y], color="tab:blue")[0], f"{y} replies/s")
    else:
        axis.plot(xs, ys, marker="o", color="tab:orange")
        for x, y in zip(xs, ys, strict=True):
            svg.tip(axis, x, y, f"{x} cores: {y} replies/s")
    axis.set(xlabel="cores", ylabel="replies/s", title=name)
    drawn = svg.inline(figure, f"fig-{name}")
    return f'<figure id="fig-{name}">{drawn}<figcaption>What {name} shows.</figcaption></figure>'


def handmade_report(folder: Path) -> Path:
    """A page that keeps the report's contract, for these checks to pass on before (and
    besides) the real one."""
    lesson = "".join(f"<li>Sentence {n} of the lesson.</li>" for n in range(1, 7))
    sections = "".join(
        f'<details id="{name}"><summary><h2>{name.title()}</h2> one line</summary>'
        f'<div id="{name}-body"><p>What the {name} section says.</p>'
        f"{_svg_figure(name, bars=True)}</div></details>"
        for name in ("throughput", "machine")
    )
    page = folder / "report.html"
    page.write_text(
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>report</title>'
        f"<style>{STYLE}</style></head><body><h1>The headline: what this bench found</h1>"
        f'<section id="lesson"><ul>{lesson}</ul><p><a href="#machine-body">The machine</a>: '
        f"calm.</p></section>{_svg_figure('cores', bars=False)}"
        f"{sections}</body></html>",
        encoding="utf-8",
    )
    return page


@pytest.fixture(scope="module")
def browser():
    with Browser(CHROMIUM) as started:
        yield started


@pytest.fixture(scope="module", params=["handmade", "tiny bench"])
def report(request, tmp_path_factory) -> Path:
    """The page checked: the handmade one, or the report.html of the session's tiny bench."""
    if request.param == "handmade":
        return handmade_report(tmp_path_factory.mktemp("handmade"))
    folder, _ = request.getfixturevalue("tiny_bench")
    return folder / "report.html"


def show(browser: Browser, page: Path) -> None:
    browser.open(page.as_uri(), width=WIDTH, height=HEIGHT)


def elsewhere(browser: Browser, page: Path) -> list[str]:
    """Every URL the page asked for besides itself and data: URLs."""
    itself = {page.as_uri(), browser.evaluate("location.href")}
    return [url for url in browser.requests if url not in itself and not url.startswith("data:")]


@in_browser
def test_the_driver_sees_a_console_error_an_exception_and_a_request_off_the_machine(tmp_path):
    page = tmp_path / "bad.html"
    page.write_text(
        '<!doctype html><html><head><meta charset="utf-8"></head><body><h1>bad</h1>'
        '<script>console.error("deliberate", 42)</script><img src="http://192.0.2.1/x.png">'
        "<script>null.property</script></body></html>"
    )
    with Browser(CHROMIUM, timeout=15) as bad:
        tree = [psutil.Process(bad.pid), *psutil.Process(bad.pid).children(recursive=True)]
        profile = bad.profile
        show(bad, page)
        assert "deliberate 42" in bad.console_errors
        assert any(e.startswith("uncaught: TypeError") for e in bad.console_errors)
        assert any("http://192.0.2.1/x.png" in e for e in bad.console_errors)  # blocked
        assert elsewhere(bad, page) == ["http://192.0.2.1/x.png"]
        assert bad.evaluate("document.querySelector('h1').textContent") == "bad"
    assert wait_gone(tree, timeout=5) == []  # the browser and every helper it started
    assert not Path(profile).exists()


@in_browser
def test_nothing_is_fetched_and_nothing_reports_an_error(browser, report):
    show(browser, report)
    assert browser.console_errors == []
    assert elsewhere(browser, report) == []


@in_browser
def test_the_headline_and_a_lesson_of_at_most_six_sentences(browser, report):
    show(browser, report)
    assert browser.evaluate("document.querySelector('h1')?.textContent.trim()")
    sentences = browser.evaluate(
        "[...document.querySelectorAll('section#lesson li')].map(li => li.textContent.trim())"
    )
    assert 1 <= len(sentences) <= 6 and all(sentences), sentences


@in_browser
def test_the_first_screen_holds_the_lesson_and_the_cores_figure(browser, report):
    show(browser, report)
    browser.evaluate("scrollTo(0, 0)")
    for selector in ("section#lesson", "figure#fig-cores"):
        box = browser.rect(selector)
        assert box["height"] > 0 and box["bottom"] <= HEIGHT, (selector, box)


@in_browser
def test_clicking_a_summary_opens_its_details(browser, report):
    show(browser, report)
    folded = browser.evaluate("document.querySelector('details:not([open])')?.id")
    assert folded, "no folded <details> with an id"
    # how tall its content shows (a folded section's content is laid out, only not shown:
    # checkVisibility tells the two apart)
    content = f"""[...document.getElementById({json.dumps(folded)}).children]
        .filter(child => child.tagName !== 'SUMMARY' && child.checkVisibility())
        .reduce((sum, child) => sum + child.getBoundingClientRect().height, 0)"""
    assert browser.evaluate(content) == 0  # folded: none of its content shows
    browser.click(f"details[id={json.dumps(folded)}] > summary")
    assert browser.evaluate(f"document.getElementById({json.dumps(folded)}).open") is True
    assert browser.evaluate(content) > 0


@in_browser
def test_the_machine_line_under_the_lesson_opens_its_section(browser, report):
    show(browser, report)
    link = 'a[href="#machine-body"]'
    assert browser.evaluate("document.getElementById('machine').open") is False
    browser.click(link)
    assert browser.evaluate("document.getElementById('machine').open") is True
    assert browser.rect("#machine > summary")["bottom"] > 0  # scrolled to, its title in view


def drawn(png: bytes) -> tuple[float, int]:
    """The share of pixels that are not white, and how many colours there are (up to 4096)."""
    image = Image.open(io.BytesIO(png)).convert("RGB")
    grey = image.convert("L").histogram()
    inked = sum(grey[:245]) / (image.width * image.height)
    return inked, len(image.getcolors(4096) or range(4096))


@in_browser
def test_every_figure_is_drawn_once_every_section_is_open(browser, report):
    show(browser, report)
    browser.evaluate("document.querySelectorAll('details').forEach(d => { d.open = true })")
    # each figure numbered, to be found again whether it has an id or not
    names = browser.evaluate("[...document.querySelectorAll('figure')].map((figure, n) => "
                             "{ figure.dataset.checked = n; return figure.id })")  # fmt: skip
    assert "fig-cores" in names and all(names) and len(set(names)) == len(names), names
    for n, name in enumerate(names):
        which, drawing = f"figure {n} ({name or 'no id'})", f'figure[data-checked="{n}"] svg'
        assert browser.evaluate(f"!!document.querySelector('{drawing}')"), f"{which}: no <svg>"
        box = browser.rect(drawing)
        assert box["width"] > 50 and box["height"] > 50, (which, box)
        inked, colours = drawn(browser.screenshot(clip=box))
        assert inked > 0.01 and colours > 8, (which, inked, colours)
    assert browser.console_errors == [] and elsewhere(browser, report) == []


@in_browser
def test_screenshot_writes_the_first_screen_as_a_png(report, tmp_path, capsys):
    out = tmp_path / "first.png"
    assert main(["screenshot", str(report), "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    with Image.open(out) as image:
        assert image.size == (WIDTH, HEIGHT)
    assert drawn(out.read_bytes())[0] > 0.01


@pytest.mark.parametrize("missing", ["browser", "file"])
def test_screenshot_says_why_it_cannot(missing, tmp_path, monkeypatch, capsys):
    page = tmp_path / "report.html"
    if missing == "browser":
        page.write_text("<h1>x</h1>")
        monkeypatch.setattr(driver, "find_chromium", lambda: None)
    assert main(["screenshot", str(page)]) == 2
    err = capsys.readouterr().err
    said = "no Chromium found" if missing == "browser" else "no such file"
    assert err.startswith(f"error: {said}") and err.count("\n") == 1, err
    assert not page.with_suffix(".png").exists()
