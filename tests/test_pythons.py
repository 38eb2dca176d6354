"""--python: the servers on another interpreter, the generator where it is; and finding one."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys

import pytest
from helpers import ROOT

from loadgen.analysis.results import load
from loadgen.harness import pythons, sid
from loadgen.harness.pythons import (
    InterpreterError,
    candidates,
    model_packages,
    newest,
    probe,
    version_of,
)
from servers import MODELS
from servers.interpreter import describe


def test_about_describes_this_interpreter_and_every_model():
    about = probe(sys.executable)
    here = describe()
    assert about["version"] == here["version"] and about["gil_enabled"] == here["gil_enabled"]
    assert set(about["unavailable"]) == set(MODELS)
    for name, reason in about["unavailable"].items():
        assert reason == MODELS[name].unavailable_reason()


@pytest.mark.parametrize(
    ("python", "message"),
    [("/no/such/python", "no interpreter at"), ("/bin/true", "not JSON"),
     ("/bin/false", "cannot run the servers")],
)  # fmt: skip
def test_an_interpreter_that_cannot_serve_is_one_clear_error(python, message):
    with pytest.raises(InterpreterError, match=message):
        probe(python)


def test_a_missing_interpreter_stops_the_bench_before_it_starts(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "loadgen", "bench", "--python", "/no/such/python", "--quick",
         "--out", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert done.returncode == 2 and "no interpreter at '/no/such/python'" in done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "results.json").exists()


@pytest.mark.slow
def test_the_newest_python_found_has_a_gil_and_is_recent_enough():
    chosen = newest()
    if chosen is None:
        pytest.skip("no CPython 3.12+ on PATH or in pyenv")
    version, has_gil = version_of(chosen)
    assert has_gil and version[:2] >= (3, 12)
    assert all(version >= (version_of(p) or ((0,), True))[0] for p in candidates()
               if (version_of(p) or ((0,), False))[1])  # fmt: skip


def _another_python() -> str | None:
    """An interpreter of another version than this one that can run the servers."""
    mine = tuple(sys.version_info[:3])
    for python in candidates():
        answer = version_of(python)
        if answer and answer[0] != mine and answer[0][:2] >= (3, 11):
            return python
    return None


@pytest.mark.slow
def test_bench_runs_the_servers_on_another_python_and_skips_what_it_cannot_run(tmp_path):
    other = _another_python()
    if other is None:
        pytest.skip("no second CPython 3.11+ on this machine to run the servers on")
    asked = list(MODELS)
    done = subprocess.run(
        [sys.executable, "-m", "loadgen", "bench", "--python", other, "--models",
         ",".join(asked), "--work", "io=1ms", "--concurrency", "2", "--trials", "1",
         "--duration", "0.2", "--warmup", "0.05", "--no-load-sweep", "--no-core-sweep",
         "--no-timeline", "--out", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=240, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    data = load(tmp_path / "results.json")
    metadata = data.metadata
    server_python = metadata.server_python
    version, has_gil = version_of(other)
    assert server_python.version == ".".join(map(str, version))
    assert server_python.gil_enabled is has_gil and server_python.path == other
    assert metadata.python == ".".join(map(str, sys.version_info[:3]))  # the generator's
    measured = {run.model for run in data.runs}
    skipped = metadata.skipped
    assert measured | set(skipped) == set(asked) and not measured & set(skipped)
    assert all(reason for reason in skipped.values())
    assert all(server.ready.python == server_python.version for server in data.servers)
    report = (tmp_path / "report.md").read_text()
    assert f"The servers ran on CPython {server_python.version}" in report
    for model, reason in skipped.items():
        assert f"skipping {model}: {reason}" in done.stdout
        assert f"Not measured: {model}, because {reason}." in report


@pytest.mark.parametrize("same", [True, False], ids=["kept", "rebuilt"])
def test_make_rebuilds_a_venv_built_from_another_interpreter(tmp_path, same):
    """A .venv whose python is not the chosen interpreter is rebuilt; the right one is kept."""
    mine = os.path.realpath(sys.executable)
    other = next((p for p in candidates() if os.path.realpath(p) != mine), None)
    if not same and other is None:
        pytest.skip("needs a second interpreter on this machine")
    for name in ("Makefile", "pyproject.toml"):
        shutil.copy(ROOT / name, tmp_path / name)
    (tmp_path / ".venv" / "bin").mkdir(parents=True)
    (tmp_path / ".venv" / "bin" / "python").symlink_to(os.path.realpath(sys.executable))
    (tmp_path / ".venv" / ".installed").touch()  # newer than pyproject.toml
    chosen = sys.executable if same else other
    done = subprocess.run(["make", "-n", "test", f"PYTHON={chosen}"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=30)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert ("rebuilding it" in done.stdout) is not same
    assert ("-m venv" in done.stdout) is not same


def test_the_venvs_of_other_pythons_get_exactly_the_models_packages():
    from servers.interpreter import PACKAGES

    wanted = model_packages()
    assert {re.match(r"[\w.-]+", requirement).group(0) for requirement in wanted} == set(PACKAGES)
    assert all(">=" in requirement for requirement in wanted)  # the project's own bounds


@pytest.mark.parametrize(
    ("sources", "found"),
    [("Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm\n",
      "http://deb.debian.org/debian"),
     ("deb [arch=amd64] http://ftp.fr.debian.org/debian/ trixie main\n",
      "http://ftp.fr.debian.org/debian"),
     ("URIs: http://deb.debian.org/debian-security\n", None), ("", None)],
)  # fmt: skip
def test_the_chroot_uses_the_mirror_apt_uses(sources, found):
    assert sid.mirror_in(sources) == found


def test_the_chroot_wrapper_is_valid_shell_that_mounts_nothing_outside_its_namespace(tmp_path):
    text = sid.WRAPPER.format(version="3.15", root="/cache/sid", python=sid.python_in("3.15"))
    (tmp_path / "python").write_text(text)
    assert subprocess.run(["sh", "-n", str(tmp_path / "python")]).returncode == 0
    assert "unshare --mount --propagation private" in text  # mounts end with the namespace
    assert "/opt/venvs/3.15/bin/python" in text


def test_a_listing_that_is_missing_or_broken_reads_as_nothing_provided(tmp_path, monkeypatch):
    monkeypatch.setattr(pythons, "LISTING", tmp_path / "pythons.json")
    assert pythons.provided() == {}
    (tmp_path / "pythons.json").write_text('[{"version": 3}]')
    assert pythons.provided() == {}
    entry = pythons.Provided("3.15", missing="the Debian sid chroot needs root")
    (tmp_path / "pythons.json").write_text(json.dumps([dataclasses.asdict(entry)]))
    assert pythons.provided() == {"3.15": entry}


def test_optimisation_is_told_only_where_the_build_flags_tell_it():
    from servers.interpreter import optimized

    assert optimized("'--enable-optimizations' '--with-lto'") is True
    assert optimized("'--prefix=/usr' '--enable-shared'") is None  # Debian's PGO does not show


@pytest.mark.slow
def test_about_with_speed_measures_the_calibration_loop():
    about = probe(sys.executable, speed=True)
    assert about["iterations_per_ms"] > 100
    assert probe(sys.executable)["iterations_per_ms"] is None
