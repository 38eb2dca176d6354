"""python -m loadgen soak: each model overloaded, then let off, and where every datagram went.

    python -m loadgen soak [--models a,b] [--work cpu=2ms] [--overload-s 10] [--recover-s 5]
                           [--out results/latest] [--python PATH]        # make bench-soak

For each model, alone on the machine, a fresh server: its capacity (closed loop, 32 clients),
its light-load p99 (open loop at half of it), then ``--overload-s`` seconds of open loop at twice
its capacity and ``--recover-s`` seconds back at half. It must stay up (and stop cleanly after),
its memory must not grow by more than 10% after the first second of overload, and its p99 should
come back within 2x the light-load value. The generator's losses are set beside the kernel's own
count of datagrams it dropped for want of room in a socket's receive buffer over the same
window: ``/proc/net/udp``'s ``drops`` for the server's socket, and ``Udp: RcvbufErrors`` of
``/proc/net/snmp`` (machine-wide: the generator's sockets count there too). Lost = dropped in
the server's buffer + answered too late (past the 1 s timeout) + dropped elsewhere.

Writes ``soak.json`` into ``--out`` and prints the table. ``cpu=2ms`` by default: the generator
can offer twice what every model answers, so the server, not the generator, is overloaded.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loadgen.analysis.experiments import RECOVERY_FACTOR
from loadgen.analysis.results import DEFAULT_OUT, write_json_atomically
from loadgen.generator import runner
from loadgen.generator.engine import Settings
from loadgen.harness.calibration import calibrate_works
from loadgen.harness.pythons import runnable
from loadgen.harness.server import ServerProcess, start_model
from servers import NAME_WIDTH
from servers.work import Work, parse

CAPACITY_CLIENTS = 32
OPEN_CLIENTS = 64


def kernel_udp_drops(port: int) -> dict[str, int]:
    """Datagrams the kernel dropped: for the socket bound to ``port``, and machine-wide."""
    socket_drops = 0
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port:
                socket_drops += int(fields[-1])
    counters: dict[str, int] = {}
    try:
        rows = [line.split() for line in Path("/proc/net/snmp").read_text().splitlines()
                if line.startswith("Udp:")]  # fmt: skip
        counters = {key: int(value) for key, value in zip(rows[0][1:], rows[1][1:], strict=True)}
    except (OSError, IndexError, ValueError):
        pass
    return {"socket_drops": socket_drops, "rcvbuf_errors": counters.get("RcvbufErrors", 0),
            "in_errors": counters.get("InErrors", 0)}  # fmt: skip


def _open(server: ServerProcess, rate: float, seconds: float) -> dict[str, Any]:
    """Open loop at ``rate`` for ``seconds``, at once: no probe first, which after an overload
    would wait behind the backlog and push the recovery out of the window that measures it."""
    settings = Settings(*server.address, mode="open", rate=rate,
                        concurrency=OPEN_CLIENTS, duration=seconds, warmup=0.0)  # fmt: skip
    return runner.run_here(settings)


class MemorySampler:
    """The server tree's resident memory every 0.25 s, in a thread, while a phase runs."""

    def __init__(self, server: ServerProcess) -> None:
        self.server, self.samples = server, []
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        started = time.monotonic()
        while not self.done.wait(0.25):
            self.samples.append((time.monotonic() - started, self.server.sample().rss_bytes))

    def __enter__(self) -> MemorySampler:
        self.thread.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self.done.set()
        self.thread.join()


def soak_one(model: str, work: Work, overload_s: float, recover_s: float,
             python: str | None) -> dict[str, Any]:  # fmt: skip
    with start_model(model, work, 8, python=python) as server:
        server.wait_ready()
        closed = Settings(*server.address, concurrency=CAPACITY_CLIENTS, duration=1.5, warmup=0.3)
        capacity = runner.run(closed)["throughput_rps"]
        light = _open(server, capacity / 2, 2.0)
        before = kernel_udp_drops(server.ready["port"])
        with MemorySampler(server) as sampler:
            overload = _open(server, 2 * capacity, overload_s)
        after = kernel_udp_drops(server.ready["port"])
        memory = sampler.samples
        recovery = _open(server, capacity / 2, recover_s)
        alive = server.proc.poll() is None
        stopped = server.stop_or_none()
    light_p99 = light["latency_us"]["p99"] or 0
    recovered_in = next((row["second"] + 1 for row in recovery["series"]
                         if row["p99_us"] and row["p99_us"] <= RECOVERY_FACTOR * light_p99),
                        None)  # fmt: skip
    settled = [value for elapsed, value in memory if elapsed >= 1.0] or [0]
    return {
        "model": model, "work": work.exact_spec, "capacity_rps": round(capacity, 1),
        "light": _phase(light), "overload": _phase(overload), "recovery": _phase(recovery),
        "recovery_series": recovery["series"],
        "kernel": {key: after[key] - before[key] for key in after},
        "rss_bytes": {"first_second": settled[0], "last": settled[-1], "peak": max(settled)},
        "rss_growth": (max(settled) - settled[0]) / settled[0] if settled[0] else None,
        "recovered_in_s": recovered_in, "stayed_up": alive,
        "stopped_cleanly": stopped is not None,
    }  # fmt: skip


def _phase(result: dict[str, Any]) -> dict[str, Any]:
    keys = ("rate", "duration_s", "sent", "received", "lost", "in_flight", "late",
            "throughput_rps")  # fmt: skip
    return {**{key: result[key] for key in keys}, "p99_us": result["latency_us"]["p99"],
            "accounting_ok": result["accounting_ok"]}  # fmt: skip


def table(rows: list[dict[str, Any]]) -> str:
    # lost: timed out, or still unanswered when the drain after the phase gave up
    lines = [f"{'model':{NAME_WIDTH}}  offered/s  answered/s     lost  socket drops  "
             "RSS MB before>after  p99 light>over  recovered  clean"]  # fmt: skip
    for row in rows:
        over, rss_mb = row["overload"], row["rss_bytes"]
        recovered = f"{row['recovered_in_s']} s" if row["recovered_in_s"] else "no"
        lines.append(
            f"{row['model']:{NAME_WIDTH}}  {over['rate']:9,.0f}  {over['throughput_rps']:10,.0f}"
            f"  {over['lost'] + over['in_flight']:7,}  {row['kernel']['socket_drops']:12,}  "
            f"{rss_mb['first_second'] / 2**20:9.1f}>{rss_mb['peak'] / 2**20:<9.1f}  "
            f"{row['light']['p99_us'] / 1000:5.1f}>{(over['p99_us'] or 0) / 1000:<7.0f} ms"
            f"  {recovered:>9}  {'yes' if row['stayed_up'] and row['stopped_cleanly'] else 'NO'}"
        )
    return "\n".join(lines)


@dataclass(frozen=True)
class SoakSettings:
    models: list[str] | None = None  # None: every model the servers' Python can run
    work: Work = parse("cpu=2ms")
    overload_s: float = 10.0  # seconds at several times what the model can answer
    recover_s: float = 5.0  # then seconds at half of it
    out: Path = DEFAULT_OUT  # the folder soak.json goes into
    python: str | None = None  # the servers' interpreter (None: this one)


def main(settings: SoakSettings) -> int:
    work, overload_s, recover_s, python = (settings.work, settings.overload_s,
                                           settings.recover_s, settings.python)  # fmt: skip
    server_python, models, skipped = runnable(python, settings.models)
    calibration = calibrate_works([work])
    rows = []
    for model in models:
        started = time.monotonic()
        rows.append(soak_one(model, calibration.of(work), overload_s, recover_s, python))
        print(f"{model}: done in {time.monotonic() - started:.0f} s", flush=True)
    path = settings.out / "soak.json"
    write_json_atomically(path, {"work": work.spec, "calibration": calibration.measured,
                                 "server_python": server_python, "skipped": skipped,
                                 "overload_s": overload_s, "recover_s": recover_s,
                                 "rows": rows})  # fmt: skip
    print(table(rows))
    print(f"wrote {path}")
    return 0
