"""What the load generator did in one run, typed: ``runner.merge`` builds a ``LoadResult``, the
results file keeps it (``analysis.results.Run.loadgen``), and nothing else spells its keys.
"""

from __future__ import annotations

from dataclasses import dataclass

from loadgen.generator.mix import Mix
from loadgen.generator.records import Record
from servers.work import Work


@dataclass(frozen=True, kw_only=True)
class Latency(Record):
    """One HdrHistogram summarised, in microseconds (None: nothing was recorded), with
    ``count``, the samples the percentiles were drawn from (None: not recorded)."""

    min: float | None
    mean: float | None
    p50: float | None
    p90: float | None
    p99: float | None
    p999: float | None
    max: float | None
    count: int | None


@dataclass(frozen=True, kw_only=True)
class Second(Record):
    """One second of a run, as the generator saw it."""

    second: int
    sent: int
    replies: int
    lost: int
    p50_us: float | None
    p99_us: float | None


@dataclass(frozen=True, kw_only=True)
class GeneratorLoad(Record):
    """The load generator's own cost and whether it kept up."""

    cpu_cores: float
    cpu_us_per_request: float | None = None
    achieved_send_rps: float | None = None
    behind: bool = False
    lag_us: Latency | None = None
    saturated: bool = False


@dataclass(frozen=True, kw_only=True)
class Share(Record):
    """A share of a mixed run's requests (``--mix``): sent, answered and lost, and their
    latencies from the scheduled time, as the run's own (``histogram`` merges across parts
    and hosts)."""

    sent: int
    received: int
    lost: int
    latency_us: Latency
    histogram: str


@dataclass(frozen=True, kw_only=True)
class ClassResult(Share):
    """One class of a mixed run."""

    name: str  # the class as asked: "cpu=20ms"
    work: Work  # as sent: "cpu=215540it"
    share: float  # of the requests, 0 to 1


@dataclass(frozen=True, kw_only=True)
class ClientResult(Share):
    """One client of a mix dealt by client: its class (an index into the mix) and its
    socket's port (the server's trace names it)."""

    client: int
    port: int
    kind: int


@dataclass(frozen=True, kw_only=True)
class LoadResult(Record):
    """What the load generator did in one run (``generator.runner.merge``'s result)."""

    mode: str
    concurrency: int
    rate: float | None
    duration_s: float
    sent: int
    received: int
    lost: int
    in_flight: int
    throughput_rps: float
    latency_us: Latency
    histogram: str
    generator: GeneratorLoad
    target: str | None = None
    arrival: str | None = None
    warmup_s: float | None = None
    timeout_s: float | None = None
    payload_size: int | None = None
    encoding: str | None = None
    protocol: str | None = None
    procs: int | None = None
    started_at: str | None = None
    late: int = 0
    duplicate: int = 0
    corrupt: int = 0
    server_errors: int = 0
    socket_errors: int = 0
    accounting_ok: bool | None = None
    latency_uncorrected_us: Latency | None = None
    histogram_uncorrected: str = ""  # open loop: latencies from the actual send, encoded
    series: tuple[Second, ...] = ()
    mix: Mix | None = None
    classes: tuple[ClassResult, ...] = ()  # with a mix: one per class, in its order
    deal: str = "request"  # the mix's classes per request, or per client (Deal)
    clients: tuple[ClientResult, ...] = ()  # a mix dealt by client: one per client
