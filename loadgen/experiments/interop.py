"""python -m loadgen interop: our generator and sockperf's C++ client, side by side.

Each on the same server, in turn: the blocking model started with ``--protocol sockperf``, then
sockperf's own ``sockperf server``. Both sides send sockperf 3.7's 14-byte messages (sockperf's
default size) from one socket, and both count round trips (sockperf with ``--full-rtt``; by
default it reports half of one). The shapes:

- ping-pong: ``sockperf ping-pong`` (one message in flight, the next sent as its reply
  arrives) against our generator in closed loop at concurrency 1: the same shape exactly.
- under-load: ``sockperf under-load --mps R`` sends R messages/s, evenly spaced, every 100th
  asking for a reply (its default ``--reply-every 100``): the server reads R messages/s and
  answers R/100. Our generator can only send messages that ask for a reply: open loop at R/s,
  evenly spaced, one client, so the server reads as many messages a second but answers every
  one. The same shape exactly is sockperf's ``--reply-every 1``, which is run too; the ratio
  column compares ours with that row, and with the reply-every-100 row below it.

Where client and server run matters more than anything else here: on the development machine
(a 2-vCPU VM) a round trip between two cores costs ~40 µs (each side wakes a halted vCPU) and
~10 µs on one core, and an unpinned run lands on either. So every server and client is pinned
(``--placement``): ``cross`` (default) the server on the last core, each client on the first;
``same``: all on the first core; ``none``: the scheduler's choice.

Latency is timed from when a message left, as sockperf does; our open loop's usual figure,
from when it was due (coordinated omission corrected), is printed under it. Each side runs
``--trials`` times (default 3), the sides in turns, and each figure is the median. Ratios are
ours / sockperf's: replies/s, p50 and p99 of the round trip. Then ``sockperf
ping-pong`` against every model started with ``--protocol sockperf``: it must run to its end
without errors; its round trips/s are listed. Everything started here is ended on the way out,
Ctrl-C included. A benchmark: it exits 0 whatever it measures (1 if sockperf failed a check).
"""

from __future__ import annotations

import datetime
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

from loadgen.analysis.results import DEFAULT_OUT, write_json_atomically
from loadgen.generator import runner
from loadgen.generator.engine import Settings
from loadgen.harness.pythons import runnable
from loadgen.harness.server import pinned, start_model
from servers import NAME_WIDTH, baseline
from servers.protocol import SOCKPERF_CLIENT, SOCKPERF_PONG_REQUEST, sockperf_message

MESSAGE_SIZE = 14  # sockperf's default --msg-size: the header alone
OUR_WARMUP_S = 0.5  # sockperf warms up 0.4 s of its -t and trims the end: about the same
START_TIMEOUT_S = 5.0
ANSI = re.compile(r"\x1b\[[0-9;]*m")
VALID = re.compile(r"\[Valid Duration\] RunTime=([\d.]+) sec; SentMessages=(\d+); "
                   r"ReceivedMessages=(\d+)")  # fmt: skip
SUMMARY = re.compile(r"Summary: (Round trip|Latency) is ([\d.]+) usec")
PERCENTILE = re.compile(r"---> percentile ([\d.]+) =\s*([\d.]+)")
EXTREME = re.compile(r"---> <(MAX|MIN)> observation =\s*([\d.]+)")
OBSERVATIONS = re.compile(r"Total (\d+) observations")
DROPPED = re.compile(r"# dropped messages = (\d+); # duplicated messages = (\d+); "
                     r"# out-of-order messages = (\d+)")  # fmt: skip


# cross: the server on the last core, the clients on the first; same: all on the first;
# none: unpinned
Placement = Literal["cross", "same", "none"]
PLACEMENTS: tuple[Placement, ...] = get_args(Placement)


def placement_cores(placement: Placement) -> tuple[list[int] | None, list[int] | None]:
    """The cores (server's, client's) for ``placement``; None: unpinned (one core: no cross)."""
    cores = sorted(os.sched_getaffinity(0))
    if placement == "none" or (placement == "cross" and len(cores) < 2):
        return None, None
    return [cores[-1] if placement == "cross" else cores[0]], [cores[0]]


class SockperfMissing(RuntimeError):
    """No ``sockperf`` binary: the comparison cannot run."""


def parse_sockperf(text: str) -> dict[str, Any]:
    """sockperf 3.7's client summary as figures, latencies as whole round trips in µs.

    Without ``--full-rtt`` sockperf reports half a round trip ("Latency is"): doubled here, so
    every figure this returns is a round trip. Raises ValueError if the summary is missing.
    """
    text = ANSI.sub("", text)
    valid, summary = VALID.search(text), SUMMARY.search(text)
    if valid is None or summary is None:
        raise ValueError("no summary in sockperf's output")
    factor = 1.0 if summary.group(1) == "Round trip" else 2.0
    runtime, sent, received = float(valid[1]), int(valid[2]), int(valid[3])
    percentiles = {float(p): float(v) * factor for p, v in PERCENTILE.findall(text)}
    extremes = {name: float(v) * factor for name, v in EXTREME.findall(text)}
    observations = OBSERVATIONS.search(text)
    dropped = DROPPED.search(text)
    return {
        "runtime_s": runtime,
        "sent": sent,
        "received": received,
        "replies_per_s": round(received / runtime, 1) if runtime else None,
        "mean_us": round(float(summary[2]) * factor, 3),
        "p50_us": percentiles.get(50.0),
        "p99_us": percentiles.get(99.0),
        "min_us": extremes.get("MIN"),
        "max_us": extremes.get("MAX"),
        "observations": int(observations[1]) if observations else None,
        "dropped": int(dropped[1]) if dropped else None,
        "duplicated": int(dropped[2]) if dropped else None,
        "out_of_order": int(dropped[3]) if dropped else None,
    }


def sockperf_binary() -> str:
    path = shutil.which("sockperf")
    if path is None:
        raise SockperfMissing("sockperf is not installed (apt-get install sockperf; root)")
    return path


def sockperf_version() -> str:
    """What ``sockperf --version`` says first ("sockperf, version 3.7-no.git"), for the record:
    its figures are its build's."""
    done = subprocess.run([sockperf_binary(), "--version"], capture_output=True, text=True,
                          timeout=10, check=False)  # fmt: skip
    return (done.stdout + done.stderr).strip().partition("\n")[0]


def free_port() -> int:
    """A UDP port free just now, for a server that cannot pick its own (sockperf's)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class SockperfServer:
    """``sockperf server`` on 127.0.0.1 and a free port, ready (it answered a pong) once
    entered; ended, its whole session, on the way out."""

    def __init__(self, cores: list[int] | None = None) -> None:
        self.address = ("127.0.0.1", free_port())
        self.proc = subprocess.Popen(
            [sockperf_binary(), "server", "-i", self.address[0], "-p", str(self.address[1])],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            start_new_session=True,  # Ctrl-C is ours: we end it, in order
            preexec_fn=pinned(cores),
        )  # fmt: skip

    def __enter__(self) -> SockperfServer:
        try:
            self.wait_ready()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def wait_ready(self) -> None:
        """It prints nothing when it listens: ask with a pong request until one comes back."""
        message = sockperf_message(1, SOCKPERF_CLIENT | SOCKPERF_PONG_REQUEST, MESSAGE_SIZE)
        deadline = time.monotonic() + START_TIMEOUT_S
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(0.05)
            while time.monotonic() < deadline and self.proc.poll() is None:
                try:
                    sock.sendto(message, self.address)
                    if sock.recv(2048):
                        return
                except OSError:  # not bound yet: port unreachable, or no answer yet
                    time.sleep(0.02)
        error = self.proc.stderr.read().decode(errors="replace") if self.proc.poll() else ""
        raise RuntimeError(f"sockperf server did not come up on {self.address}: {error}")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(2)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stderr is not None:
            self.proc.stderr.close()


def run_sockperf(
    address: tuple[str, int], seconds: float, *shape: str, cores: list[int] | None = None
) -> dict[str, Any]:
    """sockperf's client (``shape``: "ping-pong", or "under-load", "--mps", ...) for
    ``seconds`` with ``--full-rtt``, on ``cores``: its parsed summary, or why it failed, and
    its command."""
    host, port = address
    command = [sockperf_binary(), *shape, "-i", host, "-p", str(port), "-t", f"{seconds:g}",
               "--full-rtt"]  # fmt: skip
    shown = " ".join(["sockperf", *command[1:]])
    # run() kills the client on any exception, KeyboardInterrupt included
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 30,
                          stdin=subprocess.DEVNULL, check=False,
                          preexec_fn=pinned(cores))  # fmt: skip
    output = done.stdout + done.stderr
    errors = [line for line in ANSI.sub("", output).splitlines() if "ERROR" in line]
    row: dict[str, Any] = {"command": shown, "returncode": done.returncode, "errors": errors}
    try:
        row.update(parse_sockperf(output))
    except ValueError as error:
        row["errors"] = [*errors, str(error)]
    row["ok"] = done.returncode == 0 and not row["errors"]
    return row


def run_ours(
    address: tuple[str, int], seconds: float, rate: float | None, cores: list[int] | None = None
) -> dict[str, Any]:
    """Our generator with sockperf's messages, one client: closed loop, or open at ``rate``;
    its engine process on ``cores`` (a spawned child inherits this process's affinity)."""
    mode = "closed" if rate is None else "open"
    settings = Settings(*address, mode=mode, rate=rate or 0.0, concurrency=1, duration=seconds,
                        warmup=OUR_WARMUP_S, timeout=1.0, payload_size=MESSAGE_SIZE,
                        protocol="sockperf")  # fmt: skip
    before = os.sched_getaffinity(0)
    try:
        if cores:
            os.sched_setaffinity(0, cores)
        result = runner.run(settings)
    finally:
        os.sched_setaffinity(0, before)
    # sockperf times a message from when it left; so do these figures. In open loop our usual
    # latency counts from when a message was due (no coordinated omission): kept beside them,
    # its excess is the generator's own lateness in waking to send.
    latency = result["latency_uncorrected_us"] or result["latency_us"]
    shape = "closed loop, 1 client" if rate is None else f"open loop {rate:g}/s uniform, 1 client"
    return {
        "command": f"python -m loadgen run --protocol sockperf --payload-size 14 {shape}",
        "runtime_s": result["duration_s"],
        "sent": result["sent"],
        "received": result["received"],
        "lost": result["lost"],
        "replies_per_s": result["throughput_rps"],
        "mean_us": latency["mean"],
        "p50_us": latency["p50"],
        "p99_us": latency["p99"],
        "max_us": latency["max"],
        "p50_from_schedule_us": result["latency_us"]["p50"],
        "p99_from_schedule_us": result["latency_us"]["p99"],
        "generator_cores": result["generator"]["cpu_cores"],
        "behind": result["generator"]["behind"],
        "ok": result["accounting_ok"],
    }


def ratios(ours: dict[str, Any], theirs: dict[str, Any]) -> dict[str, float | None]:
    """ours / sockperf's, for replies/s, p50 and p99 (None where one side has no figure)."""
    out: dict[str, float | None] = {}
    for key in ("replies_per_s", "p50_us", "p99_us"):
        a, b = ours.get(key), theirs.get(key)
        out[key] = round(a / b, 2) if a is not None and b else None
    return out


FIGURES = ("replies_per_s", "mean_us", "p50_us", "p99_us", "max_us", "p50_from_schedule_us",
           "p99_from_schedule_us")  # fmt: skip


def median_of(trials: list[dict[str, Any]]) -> dict[str, Any]:
    """One row for repeated runs of one side: each figure's median over the trials (a shared
    machine drifts within seconds), every trial kept, ``ok`` only if each was."""
    row = dict(trials[0])
    for key in FIGURES:
        values = [trial[key] for trial in trials if trial.get(key) is not None]
        row[key] = statistics.median(values) if values else None
    row["ok"] = all(trial["ok"] for trial in trials)
    row["trials"] = trials
    return row


def compare_on(
    label: str, address: tuple[str, int], seconds: float, mps: int, cores: list[int] | None,
    trials: int = 1,
) -> list[dict]:  # fmt: skip
    """Both clients (on ``cores``) against the server at ``address``, in every shape, each run
    ``trials`` times in turns (ours, then sockperf's, then ours...): rows for the table."""
    rows = []
    runs: dict[str, list[dict]] = {"ours": [], "pp": [], "open": [], "same": [], "default": []}
    under = ("under-load", "--mps", str(mps))
    for _ in range(trials):
        runs["ours"].append(run_ours(address, seconds, None, cores))
        runs["pp"].append(run_sockperf(address, seconds, "ping-pong", cores=cores))
        runs["open"].append(run_ours(address, seconds, float(mps), cores))
        runs["same"].append(run_sockperf(address, seconds, *under, "--reply-every", "1",
                                         cores=cores))  # fmt: skip
        runs["default"].append(run_sockperf(address, seconds, *under, cores=cores))
    ours, theirs = median_of(runs["ours"]), median_of(runs["pp"])
    rows += [{"server": label, "shape": "ping-pong", "side": "sockperf", **theirs},
             {"server": label, "shape": "ping-pong", "side": "ours", **ours,
              "ratio": ratios(ours, theirs)}]  # fmt: skip
    ours, same, default = (median_of(runs[key]) for key in ("open", "same", "default"))
    shape = f"under-load {mps}/s"
    # Against reply-every 100 only the latencies compare: it answers 1 message in 100.
    ours.update(ratio=ratios(ours, same), ratio_reply_every_100=ratios(ours, default)
                | {"replies_per_s": None})  # fmt: skip
    rows += [{"server": label, "shape": shape, "side": "sockperf, reply-every 1", **same},
             {"server": label, "shape": shape, "side": "sockperf, reply-every 100", **default},
             {"server": label, "shape": shape, "side": "ours", **ours}]  # fmt: skip
    return rows


def check_models(
    models: list[str], seconds: float, python: str | None, cores: tuple[Any, Any] = (None, None)
) -> list[dict]:
    """``sockperf ping-pong`` against every model started with ``--protocol sockperf``;
    ``cores``: the server's and the client's (None: unpinned)."""
    rows = []
    for model in models:
        extra = ("--protocol", "sockperf")
        with start_model(model, extra=extra, python=python, cores=cores[0]) as server:
            server.wait_ready()
            row = run_sockperf(server.address, seconds, "ping-pong", cores=cores[1])
            stopped = server.stop_or_none()
        row.update(model=model, server_failed=None if stopped is None else stopped["failed"])
        row["ok"] = row["ok"] and stopped is not None and stopped["failed"] == 0
        rows.append(row)
        failed = "" if row["ok"] else "  FAILED: " + "; ".join(row["errors"])
        print(f"  {model:{NAME_WIDTH}}  {_figure(row.get('replies_per_s'))} round trips/s{failed}",
              flush=True)  # fmt: skip
    return rows


def _figure(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def table(rows: list[dict]) -> str:
    """The comparison as text: a row per side, its shape, its figures, ours / sockperf's."""
    head = (f"{'server':<18} {'shape':<18} {'side':<26} {'replies/s':>10} {'p50 µs':>8} "
            f"{'p99 µs':>8}   ours/sockperf: replies/s  p50   p99")  # fmt: skip
    lines = [head, "-" * len(head)]
    for row in rows:
        ratio = row.get("ratio") or {}
        tail = "   ".join(_figure(ratio.get(k), 2) for k in ("replies_per_s", "p50_us", "p99_us"))
        lines.append(f"{row['server']:<18} {row['shape']:<18} {row['side']:<26} "
                     f"{_figure(row.get('replies_per_s')):>10} {_figure(row.get('p50_us'), 1):>8} "
                     f"{_figure(row.get('p99_us'), 1):>8}   {tail if ratio else ''}")  # fmt: skip
        if "ratio_reply_every_100" in row:
            other = row["ratio_reply_every_100"]
            figures = "   ".join(
                _figure(other[k], 2) for k in ("replies_per_s", "p50_us", "p99_us")
            )
            lines.append(f"{'':<73}   against reply-every 100: {figures}")
            lines.append(f"{'':<45} timed from its schedule, not its send: p50 "
                         f"{_figure(row['p50_from_schedule_us'], 1)}, p99 "
                         f"{_figure(row['p99_from_schedule_us'], 1)} µs")  # fmt: skip
    return "\n".join(lines)


@dataclass(frozen=True)
class InteropSettings:
    models: list[str] | None = None  # None: every model the servers' Python can run
    seconds: int = 2  # per run: sockperf's -t, whole seconds
    mps: int = 5000  # under-load: messages per second
    trials: int = 3  # runs per side and shape, the median shown
    placement: Placement = "cross"  # see placement_cores
    out: Path = DEFAULT_OUT  # the folder interop.json goes into
    python: str | None = None  # the servers' interpreter (None: this one)


def main(settings: InteropSettings) -> int:
    seconds, mps, python = settings.seconds, settings.mps, settings.python
    placement, trials = settings.placement, settings.trials
    sockperf_binary()  # up front: one line if it is missing
    about, models, skipped = runnable(python, settings.models)
    server_cores, client_cores = placement_cores(placement)
    where = f"server on cores {server_cores}, clients on {client_cores}" if server_cores else (
        "unpinned")  # fmt: skip
    print(
        f"placement {placement}: {where}; {MESSAGE_SIZE}-byte messages; each figure the "
        f"median of {trials} trial(s) of {seconds:g} s, the sides taking turns",
        flush=True,
    )
    rows = []
    ours = baseline().name
    extra = ("--protocol", "sockperf")
    with start_model(ours, extra=extra, python=python, cores=server_cores) as server:
        server.wait_ready()
        rows += compare_on(f"{ours} (ours)", server.address, seconds, mps, client_cores, trials)
        server.stop_or_none()
    with SockperfServer(server_cores) as sockperf_server:
        rows += compare_on("sockperf server", sockperf_server.address, seconds, mps,
                           client_cores, trials)  # fmt: skip
    print(table(rows), flush=True)
    print(f"\nsockperf ping-pong -t {seconds:g} against every model, --protocol sockperf:")
    checks = check_models(models, seconds, python, (server_cores, client_cores))
    path = settings.out / "interop.json"
    write_json_atomically(path, {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": platform.node(), "server_python": about, "skipped": skipped,
        "sockperf": sockperf_version(),
        "seconds": seconds, "trials": trials, "mps": mps, "message_size": MESSAGE_SIZE,
        "placement": placement,
        "server_cores": server_cores, "client_cores": client_cores,
        "rows": rows, "model_checks": checks})  # fmt: skip
    print(f"wrote {path}")
    return 0 if all(check["ok"] for check in checks) else 1
