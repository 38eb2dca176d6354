"""Load from several hosts: the generator's parts as tasks on Dask workers, merged as --procs.

    python -m loadgen run --target 10.0.0.5:9000 --dask tcp://10.0.0.2:8786 --procs 4

Each part runs ``engine.run_part`` on a worker of its own (one part a worker, never two on one:
they would share its cores and its clock), and returns what it returns under ``--procs``, so
``runner.merge`` merges them the same way. Monotonic clocks of two machines have nothing in
common, so the coordinator sends a *wall-clock* start time and each part turns it into its own
monotonic one: the parts start together as closely as the hosts' clocks agree (NTP: a
millisecond or better), and each says how late it began.

A worker lost in the middle must not vanish from the totals. Each part publishes its running
counts (sent, received, lost) every 250 ms as a Dask event (fire-and-forget, so the hot loop
never waits for the scheduler); when a part's worker leaves, or its task fails, before it has
returned, the part is booked from its last published counts with every request known to be
sent and not answered as *lost*, and the result names it under ``lost_parts``. Requests it sent
after its last publication are unknown: the totals are then a lower bound, and the run fails.

``distributed`` is imported only here, and only when asked for: everything else works without.
"""

from __future__ import annotations

import datetime
import socket
import time
from collections.abc import Callable
from typing import Any

from loadgen.generator import engine, runner, stats
from loadgen.generator.engine import Settings
from loadgen.generator.runner import TargetError

CONNECT_TIMEOUT_S = 5  # no scheduler there: say so in seconds, not minutes
LEAD_S = 1.0  # from submitting the tasks to the start: time to ship them and open sockets
GRACE_S = 30.0  # a part not back this long after its planned end is counted as lost
EVENTS = "udplab-progress"  # the Dask event topic the parts publish their counts under


def _distributed() -> Any:
    try:
        import distributed
    except ImportError:
        raise TargetError(
            "--dask needs the 'distributed' package: pip install -e '.[distributed]'"
        ) from None
    return distributed


class _Published:
    """Stands in for the --procs path's shared array: engine.publish_progress assigns this
    part's row, and the row goes to the scheduler as an event the coordinator reads."""

    def __init__(self, worker: Any, topic: str, part: int) -> None:
        self.worker, self.topic, self.part = worker, topic, part

    def __setitem__(self, _: slice, row: list[int]) -> None:
        counts = dict(zip(engine.PROGRESS_FIELDS, (int(value) for value in row), strict=True))
        self.worker.log_event(self.topic, {"part": self.part, **counts})


def run_part_task(settings: Settings, part: int, start_wall_ns: int, topic: str) -> dict[str, Any]:
    """On a worker: this part from the wall-clock start on; its result with where it ran."""
    from distributed import get_worker

    runner.allow_sockets(settings)
    start_ns = time.monotonic_ns() + (start_wall_ns - time.time_ns())
    late_ms = max(0.0, (time.monotonic_ns() - start_ns) / 1e6)
    progress = _Published(get_worker(), topic, part)
    result = engine.run_part(settings, part, start_ns, progress)
    source = source_toward(settings.host, settings.port)
    return result | {"host": socket.gethostname(), "source": source, "late_start_ms": late_ms}


def source_toward(host: str, port: int) -> str:
    """This machine's address on the route to ``host``: a UDP connect sends no datagram, it
    only looks the route up."""
    with socket.socket(socket.getaddrinfo(host, None)[0][0], socket.SOCK_DGRAM) as sock:
        sock.connect((host, port))
        return sock.getsockname()[0]


def _spread(workers: list[str]) -> list[str]:
    """Workers ordered so that consecutive ones are on different hosts where possible: with
    fewer parts than workers, the load comes from as many machines as it can."""
    by_host: dict[str, list[str]] = {}
    for address in sorted(workers):
        by_host.setdefault(address.rsplit(":", 1)[0], []).append(address)
    columns = list(by_host.values())
    return [row[i] for i in range(max(map(len, columns), default=0)) for row in columns
            if i < len(row)]  # fmt: skip


def lost_part(part: int, worker: str, reason: str, last: dict[str, int] | None) -> dict[str, Any]:
    """A part whose result never came: booked from its last published counts, every request
    known to be sent and not answered counted as lost (there is no reply left to wait for)."""
    last = last or dict.fromkeys(engine.PROGRESS_FIELDS, 0)
    sent, received = last["sent"], last["received"]
    counts = dict.fromkeys(engine.COUNTS, 0) | {"sent": sent, "received": received}
    counts |= {"lost": sent - received, "in_flight": 0}
    empty = stats.encode(stats.new_histogram())
    return {
        "part": part, "clients": 0, "elapsed_s": 0.0, "cpu_s": 0.0, "counts": counts,
        "latency": empty, "uncorrected": empty, "lag": empty, "series": [],
        "worker": worker, "lost_reason": reason, "last_progress": last,
    }  # fmt: skip


Window = Callable[[str], None]


class DaskRunner:
    """One connection to a Dask scheduler, for one run or many (the bench keeps it open)."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.client: Any = None

    def __enter__(self) -> DaskRunner:
        distributed = _distributed()
        try:
            self.client = distributed.Client(
                self.address, timeout=CONNECT_TIMEOUT_S, set_as_default=False
            )
        except (OSError, TimeoutError) as error:
            reason = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise TargetError(f"no Dask scheduler at {self.address}: {reason}") from None
        return self

    def __exit__(self, *_: object) -> None:
        if self.client is not None:
            self.client.close(timeout=CONNECT_TIMEOUT_S)
            self.client = None

    def workers(self) -> list[str]:
        """The workers the scheduler knows now."""
        return list(self.client.nthreads())

    def local_address(self) -> str:
        """This machine's address on the route to the scheduler: where the workers reach it."""
        host = self.address.split("://")[-1].rsplit(":", 1)[0].strip("[]")
        return source_toward(host, 9)  # any port: nothing is sent

    def run(
        self,
        settings: Settings,
        on_progress: runner.Progress | None = None,
        on_window: Window | None = None,
    ) -> dict[str, Any]:
        """Probe the target, run ``settings.procs`` parts on as many workers, merge them."""
        runner.probe(settings)
        workers = _spread(self.workers())
        if len(workers) < settings.procs:
            raise TargetError(
                f"the Dask scheduler at {self.address} has {len(workers)} worker(s); "
                f"--procs {settings.procs} needs one each"
            )
        started_at = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
        cpu_before = time.process_time()
        run = _Run(self.client, settings, workers[: settings.procs])
        try:
            parts = run.wait(on_progress, on_window)
        finally:
            run.cancel()
        result = runner.merge(settings, parts, time.process_time() - cpu_before, started_at)
        cluster = {"scheduler": self.address, **run.summary(parts)}
        # Top level too: a reader of the totals must not miss that a part is in them as a guess.
        return result | {"cluster": cluster, "lost_parts": cluster["lost_parts"]}


def run(settings: Settings, address: str, on_progress: runner.Progress | None = None) -> dict:
    """``runner.run``, with the parts on the Dask workers of the scheduler at ``address``."""
    with DaskRunner(address) as dask_runner:
        return dask_runner.run(settings, on_progress)


class _Run:
    """One run's tasks in flight: submitted together, watched until each returns or is lost."""

    def __init__(self, client: Any, settings: Settings, workers: list[str]) -> None:
        self.client, self.settings, self.workers = client, settings, workers
        self.topic = f"{EVENTS}-{time.time_ns()}"  # this run's events only
        self.start_wall_ns = time.time_ns() + int(LEAD_S * 1e9)
        self.last: dict[int, dict[str, int]] = {}
        # Pushed to us as they come (get_events would fetch the whole log on every look); asked
        # for before the tasks go, on the same ordered stream, so no event can come before it.
        client.subscribe_topic(self.topic, self.on_event)
        self.futures = [
            client.submit(
                run_part_task, settings, part, self.start_wall_ns, self.topic,
                workers=[worker], allow_other_workers=False, pure=False,
                retries=0, key=f"loadgen-part-{part}-{self.topic}",
            )
            for part, worker in enumerate(workers)
        ]  # fmt: skip

    def wait(self, on_progress: runner.Progress | None, on_window: Window | None) -> list[dict]:
        """Every part's result, in part order; a lost part booked by ``lost_part``."""
        settings = self.settings
        total_s = settings.warmup + settings.duration
        edges = [("start", settings.warmup), ("end", total_s)]
        deadline_s = total_s + settings.timeout + GRACE_S
        parts: dict[int, dict[str, Any]] = {}
        while len(parts) < len(self.futures):
            # A future's status follows the scheduler by itself: look again soon, and sooner
            # when a window's edge is near, so the caller samples the server close to it.
            elapsed = (time.time_ns() - self.start_wall_ns) / 1e9
            time.sleep(min([0.1] + [max(0.0, at - elapsed) for _, at in edges[:1] if on_window]))
            elapsed = (time.time_ns() - self.start_wall_ns) / 1e9
            while on_window and edges and elapsed >= edges[0][1]:
                on_window(edges.pop(0)[0])  # sampled here, at the planned window's edges
            alive = set(self.client.nthreads())
            for part, future in enumerate(self.futures):
                if part not in parts:
                    found = self.outcome(part, future, alive, elapsed > deadline_s)
                    if found is not None:
                        parts[part] = found
            if on_progress:
                totals = {k: sum(r[k] for r in self.last.values()) for k in engine.PROGRESS_FIELDS}
                on_progress(min(max(elapsed, 0.0), total_s), totals, elapsed > 0)
        while on_window and edges:
            on_window(edges.pop(0)[0])
        return [parts[part] for part in sorted(parts)]

    def outcome(self, part: int, future: Any, alive: set[str], overdue: bool) -> dict | None:
        """The part's result if it came, a lost part if it will not, None while running."""
        worker = self.workers[part]
        if future.status == "finished":
            return future.result() | {"worker": worker}
        if future.status == "error":
            error = future.exception()
            if type(error).__name__ != "KilledWorker":
                raise RuntimeError(f"generator part {part} on {worker} failed: {error!r}")
            return lost_part(part, worker, "its worker was killed", self.last.get(part))
        if future.status in ("lost", "cancelled"):
            return lost_part(part, worker, f"its task was {future.status}", self.last.get(part))
        if worker not in alive:
            return lost_part(part, worker, "its worker left the cluster", self.last.get(part))
        if overdue:
            reason = f"no result {GRACE_S:g} s after the end"
            return lost_part(part, worker, reason, self.last.get(part))
        return None

    def on_event(self, event: tuple[float, dict[str, int]]) -> None:
        """A part's newest published counts (on the client's event loop: one assignment)."""
        _, counts = event
        self.last[counts["part"]] = {k: counts[k] for k in engine.PROGRESS_FIELDS}

    def cancel(self) -> None:
        self.client.unsubscribe_topic(self.topic)
        self.client.cancel(self.futures, force=True)

    def summary(self, parts: list[dict[str, Any]]) -> dict[str, Any]:
        """Where each part ran and what it counted; the lost ones named."""
        rows = []
        for part in parts:
            row = {key: part.get(key) for key in ("part", "worker", "host", "source")}
            row |= {key: part["counts"][key] for key in ("sent", "received", "lost", "in_flight")}
            row["late_start_ms"] = round(part.get("late_start_ms", 0.0), 3)
            rows.append(row)
        lost = [
            {key: part[key] for key in ("part", "worker", "lost_reason", "last_progress")}
            for part in parts
            if "lost_reason" in part
        ]
        return {"scheduler_workers": self.workers, "parts": rows, "lost_parts": lost}
