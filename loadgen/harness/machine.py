"""What a result was measured on: the machine, both interpreters, the commit, the settings;
and how busy the machine was over each run's window (load average, CPU steal, CPU used)."""

from __future__ import annotations

import datetime
import importlib.metadata
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, NamedTuple

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


def _plain(setting: Any) -> Any:
    """A setting as JSON keeps it: a path as text, a workload as its spec, lists item by item."""
    if isinstance(setting, list | tuple):
        return [_plain(item) for item in setting]
    if isinstance(setting, Path):
        return str(setting)
    return setting.to_json() if hasattr(setting, "to_json") else setting


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
        "settings": {key: _plain(value) for key, value in settings.items()},
        "calibration": calibration,
    }


class MachineSample(NamedTuple):
    """The whole machine's counters at one moment, from /proc (Linux)."""

    time: float  # time.monotonic()
    load_1m: float
    ticks: tuple[int, ...]  # /proc/stat's cpu line: user nice system idle iowait irq softirq steal
    cpus: int


TICKS_PER_S = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def machine_sample() -> MachineSample | None:
    """Load average and the CPU time counters of all CPUs, now; None where /proc is missing.

    Two small reads (tens of microseconds): cheap enough to take at each edge of a run's
    window, next to the server's own sample.
    """
    try:
        load_1m = float(Path("/proc/loadavg").read_text().split()[0])
        lines = Path("/proc/stat").read_text().splitlines()
    except (OSError, ValueError, IndexError):
        return None
    columns = lines[0].split()
    if columns[0] != "cpu" or len(columns) < 9:
        return None  # a kernel without the steal column (before 2.6.11)
    cpus = sum(1 for line in lines[1:] if line.startswith("cpu"))
    return MachineSample(time.monotonic(), load_1m, tuple(int(v) for v in columns[1:9]), cpus)


def machine_window(before: MachineSample | None, after: MachineSample | None) -> dict | None:
    """The machine between two samples: the cores busy (all CPU time but idle, iowait and
    steal: user, nice, system, and the interrupts, which a process's own CPU time includes
    when they ran in its context), the share of CPU time stolen by the hypervisor, the load
    average at each end. None without both samples."""
    if before is None or after is None or after.time <= before.time:
        return None
    delta = [b - a for a, b in zip(before.ticks, after.ticks, strict=True)]
    user, nice, system, _idle, _iowait, irq, softirq, steal = delta
    total = sum(delta)
    seconds = after.time - before.time
    return {
        "seconds": round(seconds, 4),
        "cpus": after.cpus,
        "busy_cores": round((user + nice + system + irq + softirq) / TICKS_PER_S / seconds, 3),
        "steal_share": round(steal / total, 4) if total > 0 else None,
        "load_1m_start": before.load_1m,
        "load_1m_end": after.load_1m,
    }
