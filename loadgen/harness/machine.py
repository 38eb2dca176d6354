"""What a result was measured on: the machine, both interpreters, the commit, the settings."""

from __future__ import annotations

import datetime
import importlib.metadata
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

from servers import available_cores

ROOT = Path(__file__).resolve().parents[2]


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def cpu_model() -> str:
    """The CPU's marketing name from /proc/cpuinfo (Linux), else what platform knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_commit() -> tuple[str | None, bool]:
    """This checkout's commit and whether tracked files differ from it."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=5
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT, capture_output=True, text=True, timeout=5,
        ).stdout.strip() != ""  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None, False
    return commit or None, dirty


def metadata(
    settings: dict[str, Any], calibration: dict[str, Any],
    server_python: dict[str, Any] | None = None, skipped: dict[str, str] | None = None,
) -> dict[str, Any]:  # fmt: skip
    """The machine, the generator's and the servers' interpreters, the settings, the commit."""
    commit, dirty = git_commit()
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "gevent": _version("gevent"),
        "greenlet": _version("greenlet"),
        "hdrhistogram": _version("hdrhistogram"),
        "cpu_model": cpu_model(),
        "cores": os.cpu_count(),
        "cores_available": available_cores(),
        "os": platform.platform(),
        "git_commit": commit,
        "git_dirty": dirty,
        "command": " ".join([Path(sys.executable).name, "-m", "loadgen", *sys.argv[1:]]),
        "server_python": server_python,
        "skipped": skipped,
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in settings.items()},
        "calibration": calibration,
    }
