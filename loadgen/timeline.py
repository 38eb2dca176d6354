"""python -m loadgen timeline: one burst of requests per model, traced, drawn on a time line.

    python -m loadgen timeline [--burst N] [--models a,b] [--work cpu=2ms io=5ms] [--out DIR]
    python -m loadgen timeline --from results/latest/timeline.json     # redraw a saved one

Each model gets a fresh server with ``--trace``; a warm-up burst, then the same burst of N
requests at once (by default as many as the machine has cores, so the contrast is clean). The
figure has a panel per model and workload: one row per worker that handled a request, one bar
per request from the start to the end of its work, shaded by its CPU share (CPU time over wall
time: a full-colour bar had a core to itself), and under it a strip of how many cores were busy.
"""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from typing import Any

from loadgen.plot import ordered, stamp, style, work_label
from loadgen.results import write_json_atomically
from servers import MODELS, available_cores
from servers.work import calibrate, parse

REPLY_TIMEOUT_S = 10.0


def _burst(address: tuple[str, int], size: int) -> None:
    """Send ``size`` requests at once, from as many sockets, and wait for every reply."""
    socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(size)]
    try:
        for i, sock in enumerate(socks):
            sock.settimeout(REPLY_TIMEOUT_S)
            sock.sendto(f"timeline {i}".encode(), address)
        for sock in socks:
            sock.recv(2048)
    finally:
        for sock in socks:
            sock.close()


def record(
    models: list[str], works: list[str], burst: int, folder: Path,
    exact: dict[str, str] | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Run every (work, model) burst; return the traces, keyed by work then model.

    ``exact`` maps a work spec to the iteration count a bench already calibrated, so the
    timeline's requests do the bench's work; anything missing is calibrated here.
    """
    from loadgen.bench import Server

    exact = {spec: (exact or {}).get(spec) or calibrate(parse(spec)).exact_spec for spec in works}
    traces: dict[str, dict[str, Any]] = {}
    for spec in works:
        files = {m: folder / f".trace-{m}.json" for m in models}
        servers = {m: Server(m, exact[spec], 8, extra=("--trace", str(files[m]))) for m in models}
        try:
            traces[spec] = {}
            for model, server in servers.items():
                server.wait_ready()
                address = (server.ready["host"], server.ready["port"])
                _burst(address, burst)  # warm-up: first requests pay for cold caches
                began = time.monotonic_ns()
                _burst(address, burst)
                if server.stop() is None:  # the stopped event comes once the trace is written
                    raise RuntimeError(f"{model} did not stop cleanly; no trace")
                trace = json.loads(files[model].read_text())
                files[model].unlink()
                trace["requests"] = [r for r in trace["requests"] if r["received_ns"] >= began]
                trace["burst_ns"] = began
                traces[spec][model] = trace
        finally:
            for server in servers.values():
                server.stop()  # a no-op for those already stopped
    return {"burst": burst, "cores": available_cores(), "calibration": exact, "traces": traces}


def cores_busy(requests: list[dict[str, Any]], t0: int, end: int, points: int = 400):
    """Cores busy over time: each request's CPU share, spread over its work."""
    step = max(1, (end - t0) // points)
    times = list(range(t0, end + step, step))
    busy = []
    for t in times:
        total = 0.0
        for r in requests:
            if r["start_ns"] <= t < r["end_ns"]:
                total += r["cpu_ns"] / max(1, r["end_ns"] - r["start_ns"])
        busy.append(total)
    return [(t - t0) / 1e6 for t in times], busy


def draw(data: dict[str, Any], metadata: dict[str, Any] | None = None):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    works = list(data["traces"])
    models = ordered({m for traces in data["traces"].values() for m in traces})
    cores = data.get("cores") or 1
    heights = [ratio for _ in models for ratio in (3, 1)]
    figure, axes = plt.subplots(
        2 * len(models), len(works), figsize=(6.2 * len(works) + 1.6, 2.3 * len(models) + 1.2),
        gridspec_kw={"height_ratios": heights}, squeeze=False,
    )  # fmt: skip
    for column, spec in enumerate(works):
        traces = data["traces"][spec]
        span = max((r["end_ns"] - t["burst_ns"] for t in traces.values()
                    for r in t["requests"]), default=1) / 1e6  # fmt: skip
        for row, model in enumerate(models):
            bars, strip = axes[2 * row][column], axes[2 * row + 1][column]
            trace = traces.get(model)
            colour, _ = style(model)
            if not trace or not trace["requests"]:
                bars.set_axis_off()
                strip.set_axis_off()
                continue
            t0 = trace["burst_ns"]
            requests = trace["requests"]
            key = "greenlet" if model == "gevent" else "worker"
            lanes = list(
                dict.fromkeys(r[key] for r in sorted(requests, key=lambda r: r["start_ns"]))
            )
            for r in requests:
                lane = lanes.index(r[key])
                start, end = (r["start_ns"] - t0) / 1e6, (r["end_ns"] - t0) / 1e6
                share = min(1.0, r["cpu_ns"] / max(1, r["end_ns"] - r["start_ns"]))
                waited = (r["received_ns"] - t0) / 1e6
                bars.plot([waited, start], [lane, lane], color="#999999", linewidth=1)
                bars.barh(lane, max(end - start, span / 400), left=start, height=0.7,
                          color=colour, alpha=0.25 + 0.75 * share, edgecolor=colour)  # fmt: skip
                if end - start > span / 12:
                    bars.text((start + end) / 2, lane, f"{share:.0%}", ha="center",
                              va="center", fontsize=7)  # fmt: skip
            bars.set_yticks(range(len(lanes)),
                            [f"greenlet {i + 1}" if key == "greenlet" else str(lane)
                             for i, lane in enumerate(lanes)], fontsize=7)  # fmt: skip
            bars.set_ylim(-0.6, len(lanes) - 0.4)
            bars.invert_yaxis()
            bars.set_xlim(0, span * 1.02)
            bars.tick_params(labelbottom=False)
            bars.set_ylabel(model, fontsize=10, color=colour, fontweight="bold")
            xs, busy = cores_busy(requests, t0, t0 + int(span * 1e6))
            strip.fill_between(xs, busy, step="post", color=colour, alpha=0.6)
            strip.axhline(1, color="#333333", linestyle="--", linewidth=0.8)
            strip.set_ylim(0, cores + 0.3)
            strip.set_yticks(sorted({0, 1, cores}))
            strip.set_xlim(0, span * 1.02)
            strip.set_ylabel("cores", fontsize=7)
            strip.tick_params(labelsize=7)
        axes[0][column].set_title(f"{work_label(spec, metadata or {})}: a burst of "
                                  f"{data['burst']} requests", fontsize=11)  # fmt: skip
        axes[-1][column].set_xlabel("ms since the burst was sent")
    legend = [
        Patch(facecolor="#555555", alpha=1.0, label="full colour: the request had a whole core"),
        Patch(facecolor="#555555", alpha=0.35, label="pale: it shared a core (waited its turn)"),
        Patch(facecolor="white", edgecolor="#999999", label="grey line: received, not started"),
    ]
    figure.legend(handles=legend, loc="upper right", fontsize=8, ncols=3)
    figure.suptitle("Who runs when: one bar per request, one row per worker; strip: cores busy",
                    x=0.01, ha="left", fontsize=12)  # fmt: skip
    if metadata:
        stamp(figure, metadata, f"cores available: {cores}")
    figure.tight_layout(rect=(0, 0.03, 1, 0.96))
    return figure


def write_timeline(
    out: Path, burst: int | None = None, models: list[str] | None = None,
    works: list[str] | None = None, metadata: dict[str, Any] | None = None,
    exact: dict[str, str] | None = None,
) -> Path:  # fmt: skip
    """Record the bursts, save them as timeline.json, draw timeline.png and .svg."""
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    data = record(models or list(MODELS), works or ["cpu=2ms", "io=5ms"],
                  burst or available_cores(), out, exact)  # fmt: skip
    data["metadata"] = metadata or _metadata()
    write_json_atomically(out / "timeline.json", data)
    figure = draw(data, data["metadata"])
    for suffix in ("png", "svg"):
        figure.savefig(out / f"timeline.{suffix}", dpi=120)
    plt.close(figure)
    return out / "timeline.png"


def redraw(saved: Path, out: Path | None = None) -> Path:
    import matplotlib.pyplot as plt

    data = json.loads(Path(saved).read_text(encoding="utf-8"))
    if "traces" not in data:
        raise ValueError(f"{saved} is not a timeline.json")
    out = out or Path(saved).parent
    figure = draw(data, data.get("metadata"))
    for suffix in ("png", "svg"):
        figure.savefig(out / f"timeline.{suffix}", dpi=120)
    plt.close(figure)
    return out / "timeline.png"


def _metadata() -> dict[str, Any]:
    from loadgen.bench import BenchSettings, metadata

    data = metadata(BenchSettings(), {})
    data["settings"] = {"workers": 8}
    return data
