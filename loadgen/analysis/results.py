"""Results on disk: one JSON per bench run, written atomically after every run, plus a CSV.

``results/latest/`` holds the newest bench; starting a new one moves the previous ``latest`` to
``results/archive/<its start time>/`` first, so no result is ever overwritten.
"""

from __future__ import annotations

import csv
import datetime
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

SCHEMA = 1
CSV_COLUMNS = (
    "kind", "model", "work", "trial", "concurrency", "rate", "cores_allowed", "sent",
    "received", "lost", "throughput_rps", "p50_us", "p99_us", "server_cores",
    "generator_cores", "generator_limited",
)  # fmt: skip


def write_json_atomically(path: Path, data: Any) -> None:
    """Write to a temporary file beside ``path``, then rename: never a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(
        "w", dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False
    ) as handle:
        json.dump(data, handle, ensure_ascii=False, separators=(",", ":"))
        handle.write("\n")
    os.chmod(handle.name, 0o644)  # a temporary file is private; a result is for reading
    os.replace(handle.name, path)


def archive_latest(root: Path) -> Path | None:
    """Move ``root/latest`` to ``root/archive/<start time>``; return where it went."""
    latest = root / "latest"
    if not latest.exists() or not any(latest.iterdir()):
        return None
    stamp = _started_at(latest) or datetime.datetime.fromtimestamp(latest.stat().st_mtime)
    name = stamp.strftime("%Y-%m-%dT%H%M%S")
    target = root / "archive" / name
    suffix = 1
    while target.exists():
        target = root / "archive" / f"{name}-{suffix}"
        suffix += 1
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(latest), str(target))
    return target


def _started_at(folder: Path) -> datetime.datetime | None:
    try:
        data = json.loads((folder / "results.json").read_text(encoding="utf-8"))
        return datetime.datetime.fromisoformat(data["metadata"]["date"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


class ResultsFile:
    """The bench's results.json (and results.csv), rewritten whole after every finished run."""

    def __init__(self, folder: Path, metadata: dict[str, Any]):
        self.folder = folder
        self.path = folder / "results.json"
        self.data: dict[str, Any] = {"schema": SCHEMA, "metadata": metadata}
        self.data |= {"runs": [], "servers": []}
        self.save()

    def add_run(self, run: dict[str, Any]) -> None:
        self.data["runs"].append(run)
        self.save()

    def add_server(self, server: dict[str, Any]) -> None:
        self.data["servers"].append(server)
        self.save()

    def save(self) -> None:
        write_json_atomically(self.path, self.data)
        write_csv(self.folder / "results.csv", self.data["runs"])


def csv_row(run: dict[str, Any]) -> dict[str, Any]:
    loadgen, server = run["loadgen"], run["server"]
    return {
        "kind": run["kind"],
        "model": run["model"],
        "work": run["work"],
        "trial": run["trial"],
        "concurrency": loadgen["concurrency"],
        "rate": loadgen["rate"],
        "cores_allowed": run["cores_allowed"],
        "sent": loadgen["sent"],
        "received": loadgen["received"],
        "lost": loadgen["lost"],
        "throughput_rps": loadgen["throughput_rps"],
        "p50_us": loadgen["latency_us"]["p50"],
        "p99_us": loadgen["latency_us"]["p99"],
        "server_cores": server["cores_used"],
        "generator_cores": loadgen["generator"]["cpu_cores"],
        "generator_limited": run["generator_limited"],
    }


def write_csv(path: Path, runs: list[dict[str, Any]]) -> None:
    with tempfile.NamedTemporaryFile(
        "w", dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False, newline=""
    ) as handle:
        writer = csv.DictWriter(handle, CSV_COLUMNS)
        writer.writeheader()
        for run in runs:
            writer.writerow(csv_row(run))
    os.chmod(handle.name, 0o644)
    os.replace(handle.name, path)


METADATA_KEYS = ("date", "python", "gevent", "greenlet", "cpu_model", "cores", "os", "git_commit",
                 "command", "settings", "calibration")  # fmt: skip
RUN_KEYS = ("kind", "model", "work", "trial", "cores_allowed", "server", "loadgen",
            "generator_limited")  # fmt: skip
SERVER_KEYS = ("cpu_user_s", "cpu_system_s", "cores_used", "peak_rss_bytes", "threads",
               "processes")  # fmt: skip
LOADGEN_KEYS = ("mode", "concurrency", "rate", "duration_s", "sent", "received", "lost",
                "in_flight", "throughput_rps", "latency_us", "histogram", "generator")  # fmt: skip
KINDS = ("matrix", "load_sweep", "core_sweep")


# Package versions a results file from before --python recorded at the top of its metadata.
LEGACY_PACKAGE_KEYS = ("gevent", "greenlet")


def packages(metadata: dict[str, Any]) -> dict[str, str]:
    """The versions of the packages the servers ran with (those installed, by name)."""
    recorded = metadata.get("server_python", {}).get("packages")
    if recorded is None:
        recorded = {name: metadata.get(name) for name in LEGACY_PACKAGE_KEYS}
    return {name: version for name, version in recorded.items() if version}


def gil_enabled(metadata: dict[str, Any]) -> bool:
    """Whether the servers ran with a GIL (files from before --python recorded none: they did)."""
    return bool(metadata.get("server_python", {}).get("gil_enabled", True))


def server_version(metadata: dict[str, Any]) -> str:
    """The servers' Python: recorded since --python, else the generator's (they were one)."""
    return str(metadata.get("server_python", {}).get("version") or metadata.get("python", "?"))


def problems(data: Any) -> list[str]:
    """What keeps ``data`` from being a valid schema-1 results object (empty: valid)."""
    if not isinstance(data, dict):
        return ["not a JSON object"]
    found = []
    if data.get("schema") != SCHEMA:
        found.append(f"schema is {data.get('schema')!r}, not {SCHEMA}")
    metadata = data.get("metadata")
    if not isinstance(metadata, dict):
        found.append("no metadata object")
    else:
        found += [f"metadata lacks {key}" for key in METADATA_KEYS if key not in metadata]
    runs = data.get("runs")
    if not isinstance(runs, list):
        return [*found, "no runs list"]
    for i, run in enumerate(runs):
        if not isinstance(run, dict):  # checked first: the lookups below assume an object
            found.append(f"run {i} is not an object")
            continue
        missing = [key for key in RUN_KEYS if key not in run]
        missing += [f"server.{k}" for k in SERVER_KEYS if k not in run.get("server", {})]
        missing += [f"loadgen.{k}" for k in LOADGEN_KEYS if k not in run.get("loadgen", {})]
        if missing:
            found.append(f"run {i} lacks {', '.join(missing)}")
        elif run["kind"] not in KINDS:
            found.append(f"run {i} has an unknown kind {run['kind']!r}")
        else:
            counts = run["loadgen"]
            if counts["sent"] != counts["received"] + counts["lost"] + counts["in_flight"]:
                found.append(f"run {i}: sent != received + lost + in_flight")
    if not isinstance(data.get("servers", []), list):
        found.append("servers is not a list")
    return found


def load(path: Path) -> dict[str, Any]:
    """Read a results.json, checking it is one this code understands."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ValueError(f"cannot read {path}: {error}") from None
    found = problems(data)
    if found:
        raise ValueError(f"{path} is not a valid results file: {'; '.join(found[:5])}")
    return data
