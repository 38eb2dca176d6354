"""Which interpreters the servers can run under: ask one, or find the newest on this machine.

``probe(PATH)`` runs ``PATH -m servers --about`` from the project folder and returns what that
interpreter says of itself (version, build, GIL) and of each model (available, or why not), so
``--python PATH`` can skip the models it cannot run and record what it ran on.

Run as a script (``python3 loadgen/harness/pythons.py``), standard library only, it prints the
newest CPython 3.12+ with a GIL that it finds on PATH or in pyenv: the Makefile builds ``.venv``
from it, so sub-interpreters with their own GIL are on by default wherever such a Python exists.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
PROBE_TIMEOUT_S = 60
OLDEST_FOR_VENV = (3, 12)  # the first with a GIL per sub-interpreter (PEP 684)
_VERSION = re.compile(r"^python3\.(\d+)$")


class InterpreterError(Exception):
    """The interpreter is missing or cannot run the servers: one line for the user."""


def probe(python: str) -> dict[str, Any]:
    """``python -m servers --about``: the interpreter's facts and ``unavailable`` per model."""
    executable = shutil.which(python) or python
    if not Path(executable).exists():
        raise InterpreterError(f"no interpreter at {python!r}")
    try:
        done = subprocess.run([executable, "-m", "servers", "--about"], cwd=ROOT,
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
    python: str | None, models: list[str] | None, say: Any = sys.stdout
) -> tuple[dict[str, Any], list[str], dict[str, str]]:
    """Ask the servers' interpreter (default: this one) what it is and which of ``models``
    (default: all) it can run: its facts, the models to measure, and the ones skipped with the
    reason, each also said on ``say``. Raises InterpreterError if it can run none of them."""
    from servers import MODELS  # here: run as a script, this file has no package around it

    python = python or sys.executable
    about = probe(python)
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


if __name__ == "__main__":
    chosen = newest()
    if chosen is None:
        sys.exit(1)  # the Makefile falls back to python3
    print(chosen)
