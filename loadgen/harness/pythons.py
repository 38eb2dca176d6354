"""Which interpreters the servers can run under: ask one, or find the newest on this machine.

``probe(PATH)`` runs ``PATH -m servers --about`` from the project folder and returns what that
interpreter says of itself (version, build, GIL) and of each model (available, or why not), so
``--python PATH`` can skip the models it cannot run and record what it ran on.

Run as a script (``python3 loadgen/harness/pythons.py``), standard library only, it prints the
newest CPython 3.12+ with a GIL that it finds on PATH or in pyenv: the Makefile builds ``.venv``
from it, so sub-interpreters with their own GIL are on by default wherever such a Python exists.

``provide()`` (``make pythons``, ``python -m loadgen pythons``) gives the servers every CPython
3.11+ this machine has or can be given, one per minor version: each found on PATH, in pyenv or
uv's folder gets a venv holding the models' packages in the cache (``CACHE``, outside the
project; ``.venv``'s own interpreter is ``.venv``), and 3.14 and 3.15, where none is found,
come from a Debian sid chroot (``harness.sid``). What it provided, and why a version it looks
for is missing, is written to ``CACHE/pythons.json`` for the tests to read (``provided()``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
# Made once and kept between runs, outside the project: venvs, the sid chroot, the listing.
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "udp-concurrency-lab"
LISTING = CACHE / "pythons.json"
WANTED = ("3.11", "3.12", "3.13", "3.14", "3.15")  # the versions provide() looks for
PROBE_TIMEOUT_S = 60
OLDEST_FOR_VENV = (3, 12)  # the first with a GIL per sub-interpreter (PEP 684)
_VERSION = re.compile(r"^python3\.(\d+)$")


class InterpreterError(Exception):
    """The interpreter is missing or cannot run the servers: one line for the user."""


def probe(python: str, speed: bool = False) -> dict[str, Any]:
    """``python -m servers --about``: the interpreter's facts and ``unavailable`` per model;
    ``speed``: its calibration loop's speed too (``iterations_per_ms``, about a second)."""
    executable = shutil.which(python) or python
    if not Path(executable).exists():
        raise InterpreterError(f"no interpreter at {python!r}")
    try:
        command = [executable, "-m", "servers", "--about", *(["--speed"] if speed else [])]
        done = subprocess.run(command, cwd=ROOT,
                              capture_output=True, text=True, timeout=PROBE_TIMEOUT_S,
                              stdin=subprocess.DEVNULL)  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as error:
        raise InterpreterError(f"cannot run {python!r}: {error}") from None
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no message"])[-1]
        raise InterpreterError(f"{python!r} cannot run the servers (they need Python 3.11+): "
                               f"{last}")  # fmt: skip
    try:
        about = json.loads(done.stdout)
    except ValueError:
        raise InterpreterError(f"{python!r} answered --about with something not JSON") from None
    about["path"] = executable  # as given (a venv's python), beside sys.executable's answer
    return about


def runnable(
    python: str | None, models: list[str] | None, say: Any = sys.stdout, speed: bool = False
) -> tuple[dict[str, Any], list[str], dict[str, str]]:
    """Ask the servers' interpreter (default: this one) what it is and which of ``models``
    (default: all) it can run: its facts, the models to measure, and the ones skipped with the
    reason, each also said on ``say``. Raises InterpreterError if it can run none of them."""
    from servers import MODELS  # here: run as a script, this file has no package around it

    python = python or sys.executable
    about = probe(python, speed)
    unavailable = about.pop("unavailable")
    asked = models or list(MODELS)
    skipped = {m: unavailable.get(m) or f"{about['path']} does not know this model"
               for m in asked if m not in unavailable or unavailable[m]}  # fmt: skip
    for model, reason in skipped.items():
        print(f"skipping {model}: {reason}", file=say, flush=True)
    chosen = [m for m in asked if m not in skipped]
    if not chosen:
        raise InterpreterError(f"{python} can run none of the models asked for")
    return about, chosen, skipped


def candidates() -> list[str]:
    """Every python3.X on PATH and every pyenv version's python3, without duplicates."""
    found = []
    for folder in os.environ.get("PATH", "").split(os.pathsep):
        if folder.endswith("shims"):  # pyenv's shims refuse versions not selected: skip them
            continue
        for path in sorted(Path(folder or ".").glob("python3.*")):
            if _VERSION.match(path.name) and os.access(path, os.X_OK):
                found.append(str(path))
    root = os.environ.get("PYENV_ROOT") or str(Path.home() / ".pyenv")
    found += sorted(str(p) for p in Path(root).glob("versions/*/bin/python3"))
    uv = os.environ.get("UV_PYTHON_INSTALL_DIR") or str(Path.home() / ".local/share/uv/python")
    found += sorted(str(p) for p in Path(uv).glob("cpython-*/bin/python3"))
    unique = {os.path.realpath(path): path for path in reversed(found)}  # /bin is /usr/bin
    return sorted(unique.values(), key=found.index)


def version_of(python: str) -> tuple[tuple[int, ...], bool] | None:
    """(version, has a GIL) of an interpreter, or None if it does not answer."""
    script = ("import sys, sysconfig; print(*sys.version_info[:3], "
              "int(bool(sysconfig.get_config_var('Py_GIL_DISABLED'))))")  # fmt: skip
    try:
        done = subprocess.run([python, "-c", script], capture_output=True, text=True,
                              timeout=10, stdin=subprocess.DEVNULL)  # fmt: skip
        *numbers, free_threaded = (int(part) for part in done.stdout.split())
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return None
    return tuple(numbers), not free_threaded


def newest(oldest: tuple[int, int] = OLDEST_FOR_VENV) -> str | None:
    """The newest CPython at least ``oldest`` with a GIL (gevent and greenlet support those)."""
    best: tuple[tuple[int, ...], str] | None = None
    for python in candidates():
        answer = version_of(python)
        if answer and answer[1] and answer[0][:2] >= oldest and (not best or answer[0] > best[0]):
            best = (answer[0], python)
    return best[1] if best else None


@dataclass(frozen=True)
class Provided:
    """One version provide() looked for: the interpreter to pass as ``--python`` and where it
    came from, or why there is none."""

    version: str  # "3.14"
    python: str | None = None
    source: str | None = None  # ".venv", "PATH", "pyenv", "uv" or "Debian sid chroot"
    missing: str | None = None  # why there is none


def model_packages() -> list[str]:
    """The project's requirements that the models import (pyproject.toml, with their bounds
    and markers), for a venv of another interpreter."""
    from servers.interpreter import PACKAGES

    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    name = re.compile(r"^([A-Za-z0-9_.-]+)")
    return [req for req in project["dependencies"]
            if (found := name.match(req)) and found.group(1) in PACKAGES]  # fmt: skip


def _source(path: str) -> str:
    if ".pyenv" in path:
        return "pyenv"
    return "uv" if "/uv/python/" in path else "PATH"


def found_versions() -> dict[str, str]:
    """The newest interpreter of each CPython minor version 3.11+ found, with a GIL first."""
    best: dict[str, tuple[tuple[bool, tuple[int, ...]], str]] = {}
    for python in candidates():
        answer = version_of(python)
        if answer is None or answer[0][:2] < (3, 11):
            continue
        version, has_gil = answer
        minor, rank = f"{version[0]}.{version[1]}", (has_gil, version)
        if minor not in best or rank > best[minor][0]:
            best[minor] = (rank, python)
    return {minor: python for minor, (_, python) in sorted(best.items())}


def _venv_for(python: str, version: str, say: Callable[[str], None]) -> str:
    """A venv of ``python`` with the models' packages, in the cache; made once, remade when
    its interpreter is gone or another."""
    venv = CACHE / "venvs" / version
    inside, whole = venv / "bin" / "python", venv / ".whole"  # whole: its packages installed
    if whole.exists() and os.path.realpath(inside) == os.path.realpath(python):
        return str(inside)
    say(f"making a venv of {python} with the models' packages in {venv}")
    shutil.rmtree(venv, ignore_errors=True)
    for command in ([python, "-m", "venv", str(venv)],
                    [str(inside), "-m", "pip", "install", "-q", *model_packages()]):  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True, timeout=600,
                              stdin=subprocess.DEVNULL)  # fmt: skip
        if done.returncode != 0:
            shutil.rmtree(venv, ignore_errors=True)
            raise InterpreterError(
                f"cannot make a venv of {python}: "
                f"{(done.stderr.strip() or 'no message').splitlines()[-1]}"
            )
    whole.touch()
    return str(inside)


def provide(say: Callable[[str], None] = lambda line: None) -> list[Provided]:
    """Every CPython 3.11+ found or provided (see the module docstring), written to LISTING."""
    from loadgen.harness import sid

    mine = os.path.realpath(sys.executable)
    provided: dict[str, Provided] = {}
    for version, python in found_versions().items():
        if os.path.realpath(python) == mine or python == sys.executable:
            provided[version] = Provided(version, sys.executable, ".venv")
            continue
        try:
            provided[version] = Provided(version, _venv_for(python, version, say), _source(python))
        except InterpreterError as error:
            provided[version] = Provided(version, missing=str(error))
    lacking = [v for v in sid.VERSIONS if v not in provided]
    reason = sid.why_not() if lacking else None
    if lacking and reason is None:
        try:
            for version, wrapper in sid.provide(CACHE, lacking, model_packages(), say).items():
                answer = version_of(str(wrapper))  # it runs here: mounts allowed, say
                works = answer is not None and answer[0][:2] == tuple(map(int, version.split(".")))
                provided[version] = (
                    Provided(version, str(wrapper), "Debian sid chroot") if works else
                    Provided(version, missing=f"{wrapper} does not run here (its mounts?)")
                )  # fmt: skip
        except sid.SidError as error:
            reason = str(error)
    for version in WANTED:
        if version not in provided:
            why = reason if version in lacking else "not found on PATH, in pyenv or in uv's folder"
            provided[version] = Provided(version, missing=why)
    listing = [provided[v] for v in sorted(provided, key=lambda v: tuple(map(int, v.split("."))))]
    LISTING.parent.mkdir(parents=True, exist_ok=True)
    LISTING.write_text(json.dumps([asdict(entry) for entry in listing], indent=1) + "\n")
    return listing


def provided() -> dict[str, Provided]:
    """What the last ``provide()`` wrote, by version (empty: it never ran here)."""
    try:
        entries = [Provided(**entry) for entry in json.loads(LISTING.read_text(encoding="utf-8"))]
    except (OSError, ValueError, TypeError):
        return {}
    texts = [(entry.version, entry.python or "", entry.source or "", entry.missing or "")
             for entry in entries]  # fmt: skip
    if not all(isinstance(text, str) for fields in texts for text in fields):
        return {}  # not a listing this version wrote
    return {entry.version: entry for entry in entries}


if __name__ == "__main__":
    chosen = newest()
    if chosen is None:
        sys.exit(1)  # the Makefile falls back to python3
    print(chosen)
