"""report.html's sections for the experiments beside the bench, drawn from real files.

The samples in tests/data are small real runs (soak, lossy and interop of a few models, a
second or two each); mixed.json is the committed run in results/mixed/.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from helpers import ROOT

from loadgen.analysis import experiments
from loadgen.views import markup, others

DATA = ROOT / "tests" / "data"
SAMPLES = {"soak": DATA / "soak-sample.json", "lossy": DATA / "lossy-sample.json",
           "interop": DATA / "interop-sample.json",
           "mixed": ROOT / "results" / "mixed" / "mixed.json"}  # fmt: skip


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A results folder holding every sample under the name its experiment writes."""
    path = tmp_path_factory.mktemp("others")
    for part, sample in SAMPLES.items():
        shutil.copy(sample, path / f"{part}.json")
    return path


@pytest.fixture(scope="module")
def drawn(folder: Path) -> dict[str, markup.Section]:
    return {section.id: section for section in others.sections(folder)}


def models_in(part: str) -> set[str]:
    data = json.loads(SAMPLES[part].read_text(encoding="utf-8"))
    if part == "lossy":
        return {row["model"] for rows in data["conditions"].values() for row in rows}
    if part == "interop":
        return {check["model"] for check in data["model_checks"]}
    return {row["model"] for row in data.get("rows", data.get("runs", []))}


def test_every_file_found_gives_its_section_in_order(drawn):
    assert list(drawn) == ["soak", "lossy", "interop", "mixed"]


@pytest.mark.parametrize("part", list(SAMPLES))
def test_each_section_has_a_figure_with_hover_titles_a_table_and_its_models(drawn, part):
    section = drawn[part]
    body = section.body
    assert section.note and "could not" not in section.note
    assert body.count("<svg") == 1 and "<figcaption>" in body
    assert body.count("<title>") >= len(models_in(part))
    assert f'id="{part}-' in body  # the figure's ids carry the section's
    assert "<table>" in body and "<li>" in body
    findings = " ".join(re.findall(r"<li>(.*?)</li>", body))
    assert all(model in findings for model in models_in(part))
    assert not re.search(r"\b(None|nan|inf)\b", findings)
    assert markup.fold(section).startswith(f'<details id="{part}">')


def test_the_notes_and_sentences_are_computed_from_the_file(drawn):
    soak = experiments.load_soak(SAMPLES["soak"])
    assert drawn["soak"].note.startswith(f"{len(soak.rows)} models;")
    unanswered = sum(row.overload.unanswered for row in soak.rows)
    assert f"Of the {unanswered:,} requests" in drawn["soak"].body
    lossy = experiments.load_lossy(SAMPLES["lossy"])
    assert all(condition in drawn["lossy"].body for condition in lossy.conditions)
    interop = experiments.load_interop(SAMPLES["interop"])
    assert f"{len(interop.model_checks)} models passed" in drawn["interop"].note


def test_a_folder_with_none_of_the_files_gives_no_section(tmp_path):
    (tmp_path / "results.json").write_text("{}")
    assert others.sections(tmp_path) == []


@pytest.mark.parametrize("part", list(SAMPLES))
@pytest.mark.parametrize("content, reason", [
    (b"\x00\xff not json", "cannot read"),
    (b"[1, 2]", "not an object"),
    (b'{"rows": "many"}', "this version can read"),
])  # fmt: skip
def test_an_unreadable_file_gives_a_section_saying_why(tmp_path, part, content, reason):
    (tmp_path / f"{part}.json").write_bytes(content)
    [section] = others.sections(tmp_path)
    assert section.id == part and section.note == f"{part}.json could not be read"
    assert reason in section.body and f"{part}.json" in section.body
    assert "<svg" not in section.body


def test_counts_that_do_not_add_up_are_refused_with_where(tmp_path):
    data = json.loads(SAMPLES["lossy"].read_text(encoding="utf-8"))
    condition = next(iter(data["conditions"]))
    data["conditions"][condition][0]["sent"] += 1
    (tmp_path / "lossy.json").write_text(json.dumps(data))
    [section] = others.sections(tmp_path)
    assert "could not be read" in section.note and "sent != received" in section.body


def test_an_older_interop_file_without_version_placement_or_checks_still_draws(tmp_path):
    data = json.loads(SAMPLES["interop"].read_text(encoding="utf-8"))
    for key in ("sockperf", "placement", "trials", "model_checks", "date"):
        del data[key]
    for row in data["rows"]:
        row.pop("ratio_reply_every_100", None)
    (tmp_path / "interop.json").write_text(json.dumps(data))
    [section] = others.sections(tmp_path)
    assert "could not" not in section.note and "<svg" in section.body


def test_a_file_with_no_rows_says_so_without_a_figure(tmp_path):
    data = json.loads(SAMPLES["soak"].read_text(encoding="utf-8"))
    (tmp_path / "soak.json").write_text(json.dumps({**data, "rows": []}))
    [section] = others.sections(tmp_path)
    assert section.note == "no model was soaked" and "<svg" not in section.body


def test_a_model_that_fell_over_or_did_not_recover_is_named(tmp_path):
    data = json.loads(SAMPLES["soak"].read_text(encoding="utf-8"))
    first, second = data["rows"][0], data["rows"][1]
    first["stayed_up"] = False
    second["recovered_in_s"] = None
    (tmp_path / "soak.json").write_text(json.dumps(data))
    [section] = others.sections(tmp_path)
    count = len(data["rows"])
    assert f"{count - 1} of {count} stayed up" in section.note and "1 not back" in section.note
    assert f"Fell over: {first['model']}" in section.body
    assert re.search(rf"not within [\d.]+ s: {second['model']}", section.body)


def test_a_file_of_one_model_speaks_of_one_model(tmp_path):
    soak = json.loads(SAMPLES["soak"].read_text(encoding="utf-8"))
    lossy = json.loads(SAMPLES["lossy"].read_text(encoding="utf-8"))
    first = soak["rows"][0]["model"]
    (tmp_path / "soak.json").write_text(json.dumps({**soak, "rows": soak["rows"][:1]}))
    conditions = {name: [row for row in rows if row["model"] == first]
                  for name, rows in lossy["conditions"].items()}  # fmt: skip
    (tmp_path / "lossy.json").write_text(json.dumps({**lossy, "conditions": conditions}))
    soak_section, lossy_section = others.sections(tmp_path)
    assert soak_section.note.startswith("1 model;") and "every model" not in soak_section.body
    assert lossy_section.note.startswith("1 model behind")
    assert soak_section.body.count("<title>") >= 5 and lossy_section.body.count("<title>") >= 2
