"""Run the engines: probe the target, start P generator processes together, merge their results.

Every engine runs in a process of its own (spawned, so nothing of the coordinator's state is
inherited); the coordinator only waits, shows progress and merges, and its CPU is counted with
the engines' as the generator's own.
"""

from __future__ import annotations

import datetime
import multiprocessing
import resource
import socket
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from loadgen.generator import engine, stats, wire
from loadgen.generator.engine import Settings
from loadgen.generator.result import (
    ClassResult,
    ClientResult,
    GeneratorLoad,
    Latency,
    LoadResult,
    Second,
)
from servers.protocol import ERROR_PREFIX, WORK_MARK

BEHIND_LAG_US = 10_000  # open loop: 1% of requests sent this late or later: it fell behind
BEHIND_RATE = 0.95  # ... or an achieved send rate under 95% of the target
SATURATED_CORES = 0.9  # each generator process near a full core: the generator may be the limit
PROBE_CLIENT = wire.MAX_CLIENTS - 1
ECHO_ASKED = f"{WORK_MARK}echo ".encode("ascii")  # a request asking for no work: the mix's probe


class TargetError(Exception):
    """The target cannot be driven (no server, wrong prefix, ...): a one-line message."""


def parse_target(text: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``[IPv6]:PORT``."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"target must be HOST:PORT, not {text!r}")
    return host.strip("[]"), int(port)


def probe(settings: Settings) -> None:
    """Send one request and check its reply, so a wrong target fails in one line, up front.

    A target that speaks the other protocol is named as such: an echo server answers a sockperf
    message as text (or with ``error: ...``); a sockperf server ignores echo text (its flags
    lack CLIENT), so when no reply comes, one sockperf message asks whether that is why.
    """
    codec = _codec(settings)
    where = f"{settings.host}:{settings.port}"
    request = codec.request(PROBE_CLIENT, 0)
    reply = _exchange(settings, request)
    if reply == codec.expected_reply(request) and settings.mix:
        asking = _exchange(settings, ECHO_ASKED + request)  # does it read "@SPEC TEXT"?
        if asking == codec.expected_reply(ECHO_ASKED + request):
            raise TargetError(f"{where} answers '@SPEC TEXT' as plain text, so it cannot do "
                              "--mix's work: start it with --work-from-request")  # fmt: skip
        if asking != codec.expected_reply(request):
            raise TargetError(f"{where} did not answer '@echo TEXT' as expected: {asking!r}")
    if reply == codec.expected_reply(request):
        return
    other = "echo" if settings.protocol == "sockperf" else "sockperf"
    if reply is None:
        hint = ""
        if other == "sockperf" and _answers(replace(settings, protocol=other, timeout=0.2)):
            hint = ": it answers sockperf's messages, so it speaks sockperf (--protocol sockperf)"
        raise TargetError(
            f"no reply from {where} within {settings.timeout:g} s"
            + (hint or ": is a server running there?")
        )
    if other == "echo" and (reply.startswith(ERROR_PREFIX) or reply.endswith(request)):
        raise TargetError(
            f"{where} answered as the echo server does ({reply[:40]!r}...), not as sockperf: "
            "start it with --protocol sockperf, or drop --protocol sockperf here"
        )
    if wire.classify_unmatched(reply) is wire.Verdict.SERVER_ERROR:
        raise TargetError(f"{where} refused the request: {reply.decode('ascii', 'replace')}")
    expected = (
        "sockperf's pong"
        if other == "echo"
        else f"the echo server's (--prefix {settings.prefix!r})"
    )
    raise TargetError(f"{where} answered {reply[:40]!r}..., not the expected reply: {expected}")


def _codec(settings: Settings) -> wire.Codec | wire.SockperfCodec:
    return wire.make_codec(
        settings.protocol, settings.payload_size, settings.encoding, settings.prefix
    )


def _answers(settings: Settings) -> bool:
    """Whether the target answers one request of ``settings.protocol`` as expected."""
    codec = _codec(settings)
    request = codec.request(PROBE_CLIENT, 1)
    try:
        return _exchange(settings, request) == codec.expected_reply(request)
    except TargetError:
        return False


def _exchange(settings: Settings, request: bytes) -> bytes | None:
    """One request, its reply (None: none within the timeout); a TargetError if unreachable."""
    where = f"{settings.host}:{settings.port}"
    try:
        family = socket.getaddrinfo(settings.host, settings.port, type=socket.SOCK_DGRAM)[0][0]
    except socket.gaierror as error:
        raise TargetError(f"cannot resolve {settings.host!r}: {error.strerror}") from None
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.settimeout(max(settings.timeout, 0.1))
        try:
            sock.connect((settings.host, settings.port))
            sock.send(request)
            return sock.recv(65535)
        except ConnectionRefusedError:
            raise TargetError(f"nothing listens on UDP {where} (port unreachable)") from None
        except TimeoutError:
            return None
        except OSError as error:
            raise TargetError(f"cannot reach {where}: {error.strerror}") from None


def allow_sockets(settings: Settings) -> None:
    """Raise this process's open-file limit to fit one part's sockets (one a client), as far
    as the hard limit allows, for a process that runs a part."""
    needed = settings.concurrency // settings.procs + 64
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(needed, hard), hard))


def _engine_process(settings: Settings, part: int, progress: Any, conn: Any) -> None:
    from servers.runtime import become_worker_process

    become_worker_process()  # Ctrl-C is the coordinator's; die with it
    allow_sockets(settings)
    conn.send("ready")
    start_ns = conn.recv()
    conn.send(engine.run_part(settings, part, start_ns, progress))


Progress = Callable[[float, dict[str, int], bool], None]


def run(settings: Settings, on_progress: Progress | None = None) -> dict[str, Any]:
    """Drive the target as ``settings`` say and return the merged result."""
    probe(settings)
    context = multiprocessing.get_context("spawn")
    progress = context.RawArray("q", settings.procs * len(engine.PROGRESS_FIELDS))
    links, processes = [], []
    started_at = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    cpu_before = time.process_time()
    try:
        for part in range(settings.procs):
            mine, theirs = context.Pipe()
            process = context.Process(
                target=_engine_process, args=(settings, part, progress, theirs), daemon=True
            )
            process.start()
            theirs.close()
            links.append(mine)
            processes.append(process)
        for link in links:
            if not link.poll(30) or link.recv() != "ready":
                raise RuntimeError("a generator process did not start")
        start_ns = time.monotonic_ns() + 20_000_000
        for link in links:
            link.send(start_ns)
        total_s = settings.warmup + settings.duration
        parts: dict[int, dict[str, Any]] = {}
        while len(parts) < settings.procs:
            for part, link in enumerate(links):
                if part not in parts and link.poll(0.25 / settings.procs):
                    try:
                        parts[part] = link.recv()
                    except EOFError:
                        raise RuntimeError(
                            f"generator process {part} died; its error is above"
                        ) from None
            if on_progress:
                elapsed = (time.monotonic_ns() - start_ns) / 1e9
                on_progress(min(elapsed, total_s), _progress_totals(progress), elapsed > 0)
            if not all(p.is_alive() for p in processes) and len(parts) < settings.procs:
                if any(p.exitcode not in (0, None) for p in processes):
                    raise RuntimeError("a generator process failed; see the messages above")
    finally:
        for process in processes:
            process.join(1)
            if process.is_alive():
                process.kill()
        for link in links:
            link.close()
    coordinator_cpu = time.process_time() - cpu_before
    return merge(settings, [parts[p] for p in sorted(parts)], coordinator_cpu, started_at)


def run_here(settings: Settings, on_window: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Drive the target from this process, starting now: no helper process and no probe (for a
    caller that already knows the target answers, or whose probe could itself be lost, or wait
    behind a backlog). ``on_window`` as in ``engine.run_part``; one process, ``procs`` ignored."""
    started_at = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    part = engine.run_part(settings, 0, time.monotonic_ns() + 2_000_000, on_window=on_window)
    return merge(settings, [part], 0.0, started_at)


def _progress_totals(progress: Any) -> dict[str, int]:
    width = len(engine.PROGRESS_FIELDS)
    rows = [progress[i : i + width] for i in range(0, len(progress), width)]
    return {field: sum(row[j] for row in rows) for j, field in enumerate(engine.PROGRESS_FIELDS)}


def merge(
    settings: Settings, parts: list[dict[str, Any]], coordinator_cpu: float, started_at: str
) -> dict[str, Any]:
    """Sum the counts, merge the histograms and the per-second series of every process."""
    counts = {key: sum(part["counts"][key] for part in parts) for key in parts[0]["counts"]}
    duration = max(part["elapsed_s"] for part in parts) or settings.duration
    latency = stats.merge([part["latency"] for part in parts])
    open_loop = settings.mode == "open"
    cpu = sum(part["cpu_s"] for part in parts) + coordinator_cpu
    lag = stats.merge([part["lag"] for part in parts]) if open_loop else None
    achieved = counts["sent"] / duration
    lag_figures = stats.percentiles(lag) if lag is not None else None
    behind = open_loop and (
        achieved < BEHIND_RATE * settings.rate or (lag_figures["p99"] or 0) > BEHIND_LAG_US
    )
    engine_cores = [part["cpu_s"] / part["elapsed_s"] for part in parts if part["elapsed_s"]]
    uncorrected = stats.merge([part["uncorrected"] for part in parts]) if open_loop else None
    result = LoadResult(
        target=f"{settings.host}:{settings.port}", mode=settings.mode,
        concurrency=settings.concurrency, rate=settings.rate if open_loop else None,
        arrival=settings.arrival if open_loop else None, duration_s=round(duration, 4),
        # a Dask part booked as lost (cluster.py) reports no warm-up: the one asked stands in
        warmup_s=round(max(part.get("warmup_s", settings.warmup) for part in parts), 4),
        timeout_s=settings.timeout, payload_size=settings.payload_size,
        encoding=settings.encoding, protocol=settings.protocol, procs=settings.procs,
        started_at=started_at, sent=counts["sent"], received=counts["received"],
        lost=counts["lost"], in_flight=counts["in_flight"], late=counts["late"],
        duplicate=counts["duplicate"], corrupt=counts["corrupt"],
        server_errors=counts["server_errors"], socket_errors=counts["socket_errors"],
        accounting_ok=counts["sent"] == counts["received"] + counts["lost"] + counts["in_flight"],
        throughput_rps=round(counts["in_window"] / duration, 1),
        latency_us=Latency.from_dict(stats.percentiles(latency)),
        latency_uncorrected_us=(Latency.from_dict(stats.percentiles(uncorrected))
                                if uncorrected is not None else None),
        series=_merge_series(parts),
        histogram=stats.encode(latency),
        histogram_uncorrected=stats.encode(uncorrected) if uncorrected is not None else "",
        mix=settings.mix, classes=_merge_classes(settings, parts), deal=settings.deal,
        clients=_merge_clients(parts),
        generator=GeneratorLoad(
            cpu_cores=round(cpu / duration, 3),
            cpu_us_per_request=round(cpu / counts["sent"] * 1e6, 2) if counts["sent"] else None,
            achieved_send_rps=round(achieved, 1), behind=behind,
            lag_us=Latency.from_dict(lag_figures) if lag_figures is not None else None,
            saturated=bool(engine_cores) and max(engine_cores) > SATURATED_CORES,
        ),
    )  # fmt: skip
    return result.to_dict()


def _merge_classes(settings: Settings, parts: list[dict[str, Any]]) -> tuple[ClassResult, ...]:
    """Each class of the mix over every part (a part booked as lost brings none)."""
    if settings.mix is None:
        return ()
    merged = []
    for i, kind in enumerate(settings.mix.classes):
        rows = [part["classes"][i] for part in parts if part.get("classes")]
        histogram = stats.merge([row["latency"] for row in rows])
        merged.append(ClassResult(
            name=kind.name, work=kind.work, share=round(kind.share, 6),
            sent=sum(row["sent"] for row in rows), received=sum(row["received"] for row in rows),
            lost=sum(row["lost"] for row in rows),
            latency_us=Latency.from_dict(stats.percentiles(histogram)),
            histogram=stats.encode(histogram),
        ))  # fmt: skip
    return tuple(merged)


def _merge_clients(parts: list[dict[str, Any]]) -> tuple[ClientResult, ...]:
    """A mix dealt by client: every part's clients, by client id."""
    rows = sorted((row for part in parts for row in part.get("per_client", ())),
                  key=lambda row: row["client"])  # fmt: skip
    return tuple(
        ClientResult(client=row["client"], port=row["port"], kind=row["kind"], sent=row["sent"],
                     received=row["received"], lost=row["lost"], histogram=row["latency"],
                     latency_us=Latency.from_dict(stats.percentiles(stats.decode(row["latency"]))))
        for row in rows
    )  # fmt: skip


def _merge_series(parts: list[dict[str, Any]]) -> tuple[Second, ...]:
    seconds = max((len(part["series"]) for part in parts), default=0)
    merged = []
    for second in range(seconds):
        rows = [part["series"][second] for part in parts if second < len(part["series"])]
        figures = stats.percentiles(stats.merge([row["histogram"] for row in rows]))
        merged.append(Second(
            second=second, sent=sum(row["sent"] for row in rows),
            replies=sum(row["replies"] for row in rows), lost=sum(row["lost"] for row in rows),
            p50_us=figures["p50"], p99_us=figures["p99"],
        ))  # fmt: skip
    return tuple(merged)
