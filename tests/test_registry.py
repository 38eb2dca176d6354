"""The registry says what each model is; the views read it. Checked from the source and data."""

from __future__ import annotations

import ast
import itertools
import math

import pytest
from helpers import ROOT

from servers import MODELS, WAIT_KINDS, baseline

# Machado, Oliveira & Fernandes (2009), full severity, applied to linear RGB: how the palette
# looks to a reader with protanopia, deuteranopia or tritanopia.
SIMULATIONS = {
    "normal vision": ((1, 0, 0), (0, 1, 0), (0, 0, 1)),
    "protanopia": ((0.152286, 1.052583, -0.204868), (0.114503, 0.786281, 0.099216),
                   (-0.003882, -0.048116, 1.051998)),
    "deuteranopia": ((0.367322, 0.860646, -0.227968), (0.280085, 0.672501, 0.047413),
                     (-0.011820, 0.042940, 0.968881)),
    "tritanopia": ((1.255528, -0.076749, -0.178779), (-0.078411, 0.930809, 0.147602),
                   (0.004733, 0.691367, 0.303900)),
}  # fmt: skip
# CIE76 distance two line colours must keep in every simulation: about five "just noticeable
# differences"; Okabe-Ito's worst pair (deuteranopia: orange and yellow) is 17, while
# matplotlib's default tab10 falls to 5 (blue and purple, protanopia).
MIN_DISTANCE = 12.0


def _lab(colour: str, matrix) -> tuple[float, float, float]:
    def linear(channel: int) -> float:
        c = channel / 255
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    rgb = [linear(int(colour[i : i + 2], 16)) for i in (1, 3, 5)]
    r, g, b = (min(1.0, max(0.0, sum(row[k] * rgb[k] for k in range(3)))) for row in matrix)
    x = (0.4124 * r + 0.3576 * g + 0.1805 * b) / 0.95047
    y = 0.2126 * r + 0.7152 * g + 0.0722 * b
    z = (0.0193 * r + 0.1192 * g + 0.9505 * b) / 1.08883

    def f(t: float) -> float:
        return t ** (1 / 3) if t > 0.008856 else 7.787 * t + 16 / 116

    return 116 * f(y) - 16, 500 * (f(x) - f(y)), 200 * (f(y) - f(z))


def closest_pair(colours: list[str]) -> tuple[float, str, str, str]:
    return min(
        (math.dist(_lab(a, m), _lab(b, m)), name, a, b)
        for name, m in SIMULATIONS.items()
        for a, b in itertools.combinations(colours, 2)
    )


def test_every_model_has_its_own_colour_and_marker():
    colours = [model.colour for model in MODELS.values()]
    markers = [model.marker for model in MODELS.values()]
    assert len(set(colours)) == len(colours) and len(set(markers)) == len(markers)


def test_the_palette_stays_apart_for_colour_blind_readers():
    distance, vision, a, b = closest_pair([model.colour for model in MODELS.values()])
    assert distance >= MIN_DISTANCE, f"{a} and {b} are {distance:.1f} apart with {vision}"


def test_the_colour_check_can_fail():
    tab10_blue_and_purple = ["#1f77b4", "#9467bd"]
    assert closest_pair(tab10_blue_and_purple)[0] < MIN_DISTANCE


def test_traits_are_consistent():
    assert baseline().workers_meaning == "one"
    assert sum(model.baseline for model in MODELS.values()) == 1
    for model in MODELS.values():
        assert set(model.overlaps) <= set(WAIT_KINDS), model.name
        assert set(model.captions) <= {"cpu", *WAIT_KINDS}, model.name
        assert model.captions.get("cpu") and model.captions.get("io"), model.name
        assert model.variant_of in (None, *MODELS), model.name
        assert model.computes_in_parallel(gil_enabled=True) is (model.parallel == "always")


@pytest.mark.parametrize("gil", [True, False], ids=["GIL", "free-threaded"])
def test_only_threads_change_with_the_gil(gil):
    changes = {m.name for m in MODELS.values()
               if m.computes_in_parallel(gil) != m.computes_in_parallel(True)}  # fmt: skip
    assert changes == (set() if gil else {m.name for m in MODELS.values()
                                           if m.parallel == "without_gil"})  # fmt: skip


def _model_literals(path) -> list[tuple[int, str]]:
    """String constants equal to a model name, outside the places a name is not a model: a
    dict key or subscript (results fields: thread and process counts, the gevent version),
    a package name passed to version(), a tuple of field names assigned to *_KEYS."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    found = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Constant) and node.value in MODELS):
            continue
        parent = parents.get(node)
        if isinstance(parent, ast.Dict) and node in parent.keys:
            continue
        if isinstance(parent, ast.Subscript) and parent.slice is node:
            continue
        if isinstance(parent, ast.Call) and getattr(parent.func, "id", "").endswith("version"):
            continue
        assign = parents.get(parent)
        if isinstance(parent, ast.Tuple) and isinstance(assign, ast.Assign):
            if all(getattr(t, "id", "").endswith("_KEYS") for t in assign.targets):
                continue
        found.append((node.lineno, node.value))
    return found


def test_no_model_is_named_in_the_generator_or_the_views():
    """What a model is lives in the registry: loadgen/ reads traits, never a model's name."""
    named = {f"{path.relative_to(ROOT)}:{line}": name
             for path in sorted((ROOT / "loadgen").rglob("*.py"))
             for line, name in _model_literals(path)}  # fmt: skip
    assert named == {}


def test_the_literal_check_can_fail(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text('if model != "gevent":\n    pass\nx = {"threads": 1}\n')
    assert _model_literals(sample) == [(1, "gevent")]


def test_a_model_that_hands_requests_on_hands_them_to_workers_that_compute_in_parallel():
    for model in MODELS.values():
        assert model.computes_in_parallel() or not model.hands_off, model.name
    assert any(model.forks for model in MODELS.values())
    assert any(model.computes_in_parallel() and not model.forks for model in MODELS.values())
