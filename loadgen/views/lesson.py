"""The run's answer in at most six sentences, computed from the data: what a reader takes away.

Who computed in parallel and who took turns on one core (the first CPU workload), who overlapped
every wait and who only as many as its workers (the first waiting workload, at the highest
level with enough clients), what handing each request on cost (echo), what the machine itself
delivered, and how much of a difference is noise. Each group is named with its range of
ratios to the baseline loop; the details, model by model, are the report's findings.
"""

from __future__ import annotations

from loadgen.analysis.expectations import EXPECTED, parallel_floor
from loadgen.analysis.results import RunKind
from loadgen.analysis.summary import Summary, baseline_of, median
from servers import MODELS
from servers.work import Work

MOST = 6
EVERY_WAIT = 0.8  # of the clients' waits at once: a model that overlapped them all


def _ratio(summary: Summary, model: str, base: str, work: Work) -> float:
    return median(summary.speedups(model, base, work))


def _group(names: list[str], ratios: dict[str, float]) -> str:
    low, high = min(ratios[m] for m in names), max(ratios[m] for m in names)
    span = f"{low:.2f}x" if round(low, 2) == round(high, 2) else f"{low:.2f}-{high:.2f}x"
    return f"{', '.join(names)} ({span})"


def cpu_sentence(summary: Summary, work: Work, base: str) -> str | None:
    others = [m for m in summary.models(work=work) if m != base]
    ratios = {m: _ratio(summary, m, base, work) for m in others}
    parallel = [m for m in others if ratios[m] >= parallel_floor(summary.capacity(work))]
    turns = [m for m in others if ratios[m] <= EXPECTED.turns_speedup]
    if not parallel and not turns:
        return None
    cores = max((summary.compared(m, work).server_cores for m in parallel), default=0.0)
    said = [f"{_group(parallel, ratios)} computed in parallel, on up to {cores:.1f} cores"
            if parallel else "", f"{_group(turns, ratios)} took turns on one core"
            if turns else ""]  # fmt: skip
    return (f"With {work.spec}, against the {base} loop: "
            f"{'; '.join(s for s in said if s)}.")  # fmt: skip


def wait_sentence(summary: Summary, work: Work, base: str) -> str | None:
    others = [m for m in summary.models(work=work) if m != base]
    levels = [level for level in summary.levels(RunKind.MATRIX, base, work)
              if level >= EXPECTED.overlap_clients]  # fmt: skip
    if not levels or not others:
        return None
    level = max(levels)
    base_rate = max(summary.rate(RunKind.MATRIX, base, work, level), 1e-9)
    ratios = {m: summary.rate(RunKind.MATRIX, m, work, level) / base_rate for m in others
              if level in summary.levels(RunKind.MATRIX, m, work)}  # fmt: skip
    every = [m for m in ratios if ratios[m] >= EVERY_WAIT * level]
    some = [m for m in ratios if EXPECTED.overlap_speedup <= ratios[m] < EVERY_WAIT * level]
    stalled = [m for m in ratios if ratios[m] <= EXPECTED.stall_speedup]
    said = [f"{_group(every, ratios)} overlapped every client's wait" if every else "",
            f"{_group(some, ratios)} about as many as their workers" if some else "",
            f"{_group(stalled, ratios)} none" if stalled else ""]  # fmt: skip
    if not any(said):
        return None
    return (f"With {work.spec} and {level} clients, against the {base} loop: "
            f"{'; '.join(s for s in said if s)}.")  # fmt: skip


def hop_sentence(summary: Summary, work: Work, base: str) -> str | None:
    pools = [m for m in summary.models(work=work) if m in MODELS and MODELS[m].hands_off]
    if not pools:
        return None
    ratios = {m: _ratio(summary, m, base, work) for m in pools}
    listed = " and ".join(f"{m} {ratios[m]:.2f}x" for m in pools)
    return (f"With no work to share out, handing each request to another worker and back "
            f"cost the pools: {listed} the {base} loop's rate.")  # fmt: skip


def noise_finding(summary: Summary) -> list[str]:
    spreads = []
    for point in summary.points():
        rates = [run.loadgen.throughput_rps for run in point.runs]
        if point.kind == RunKind.MATRIX and len(rates) > 1 and median(rates) > 0:
            spreads.append((max(rates) - min(rates)) / median(rates))
    if not spreads:
        return [
            "Each point was measured once: repeat the bench (more --trials) before trusting "
            "a difference of a few tens of percent on a shared machine."
        ]
    return [
        f"Between trials of the same point, replies/s varied by {median(spreads):.0%} "
        f"(median of max-min over median; worst {max(spreads):.0%}): differences smaller "
        f"than that are noise on this machine."
    ]


def lesson(summary: Summary) -> list[str]:
    """At most ``MOST`` sentences that carry the run's answer."""
    base = baseline_of(summary.models())
    if base is None:
        return []
    works = summary.works()
    first = {kind: next((w for w in works if w.kind == kind), None) for kind in ("cpu", "io")}
    echo = next((w for w in works if w.kind == "echo"), None)
    sentences = [
        cpu_sentence(summary, first["cpu"], base) if first["cpu"] else None,
        wait_sentence(summary, first["io"], base) if first["io"] else None,
        hop_sentence(summary, echo, base) if echo else None,
    ]
    capacity = summary.capacity(first["cpu"]) if first["cpu"] else None
    if capacity is not None:
        sentences.append(f"The machine itself delivered {capacity:.2f} cores' worth of the "
                         f"same CPU work around these runs.")  # fmt: skip
    sentences += noise_finding(summary)[:1]
    return [sentence for sentence in sentences if sentence][:MOST]
