"""python -m loadgen COMMAND: drive echo servers, run the experiments, draw what they measured.

python -m loadgen run --target 127.0.0.1:8989 --mode closed --concurrency 32
python -m loadgen run --target 127.0.0.1:8989 --mode open --rate 5000 --json out.json
python -m loadgen bench --quick           # every model, every workload, figures and report
python -m loadgen selftest                # what the generator itself costs, checked two ways
python -m loadgen compare A.json B.json   # two results files side by side, noise included

One function per command, one error policy (``main``): a clear one-line message on stderr and
exit status 2 for bad usage (options, an unreadable file, a missing interpreter or tool, an
unreachable target), 1 for a run that failed, 130 for Ctrl-C, which every experiment survives
with what it had finished kept.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any, TypeVar, get_args

from loadgen.experiments.bench import PRESETS, BenchSettings
from loadgen.experiments.demo import DemoSettings
from loadgen.experiments.interop import PLACEMENTS, InteropSettings
from loadgen.experiments.lossy import LossySettings
from loadgen.experiments.mixed import MixedSettings
from loadgen.experiments.models import ModelsSettings
from loadgen.experiments.selftest import SelftestSettings
from loadgen.experiments.soak import SoakSettings
from loadgen.experiments.spread import SpreadSettings
from loadgen.experiments.stops import StopsSettings
from loadgen.experiments.timeline import TimelineSettings
from loadgen.generator import wire
from loadgen.generator.engine import ARRIVALS, MODES, Settings
from loadgen.generator.mix import Deal, Mix, parse_mix
from loadgen.generator.runner import TargetError, parse_target
from loadgen.harness.pythons import InterpreterError
from loadgen.harness.testhost import HostError
from servers import MODELS
from servers.protocol import DEFAULT_PREFIX, PROTOCOLS
from servers.work import Work
from servers.work import parse as parse_work


class UsageError(Exception):
    """Asked for something that cannot be done as asked: exit status 2."""


USAGE_ERRORS = (UsageError, TargetError, InterpreterError, HostError)


def _positive(kind: type):
    def convert(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be positive, not {text}")
        return value

    return convert


def _target(text: str) -> tuple[str, int]:
    try:
        return parse_target(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _names(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in MODELS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown model(s) {', '.join(unknown) or text!r}; choose from {', '.join(MODELS)}"
        )
    return names


def _percent(text: str) -> float:
    """'5' or '5%' -> 0.05: the compare threshold, given as people say it."""
    try:
        value = float(text.strip().removesuffix("%"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a percentage, like 5") from None
    if not 0 <= value < 100:
        raise argparse.ArgumentTypeError(f"must be from 0 to below 100, not {text}")
    return value / 100


def _work(text: str) -> Work:
    """A ``--work`` spec, parsed once here: from here on the workload is a ``Work``."""
    try:
        return parse_work(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _mix(text: str) -> Mix:
    try:
        return parse_mix(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _numbers(kind: type):
    def convert(text: str) -> list:
        try:
            values = [kind(part) for part in text.split(",") if part.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list") from None
        if not values or any(value <= 0 for value in values):
            raise argparse.ArgumentTypeError(f"{text!r}: give positive numbers, like 1,4,16")
        return values

    return convert


T = TypeVar("T")


def _given(value: T | None, default: T) -> T:
    """An option's value, or the settings' default where it was not given."""
    return default if value is None else value


def bench_settings(args: argparse.Namespace) -> BenchSettings:
    """The preset asked for (quick, full, or the default), with every option given on top."""
    base = PRESETS["quick" if args.quick else "full" if args.full else "default"]
    return dataclasses.replace(
        base,
        models=_given(args.models, base.models),
        works=_given(args.work, base.works),
        concurrency=_given(args.concurrency, base.concurrency),
        trials=_given(args.trials, base.trials),
        duration=_given(args.duration, base.duration),
        warmup=_given(args.warmup, base.warmup),
        retries=_given(args.retries, base.retries),
        workers=_given(args.workers, base.workers),
        load_sweep=[] if args.no_load_sweep else _given(args.load_sweep, base.load_sweep),
        core_sweep=base.core_sweep and not args.no_core_sweep,
        probe=base.probe and not args.no_probe,
        timeline=base.timeline and not args.no_timeline,
        out=_given(args.out, base.out),
        python=_given(args.python, base.python),
        dask=_given(args.dask, base.dask),
    )


PYTHON_HELP = ("run the servers under this interpreter (default: this one); models it cannot "
               "run are skipped with the reason")  # fmt: skip


def _common(command: Any, out: str | None) -> None:
    """The options every experiment over the models shares, declared once: ``--models``,
    ``--python`` and, where the command writes files, ``--out`` (the folder they go into;
    ``out`` says what goes there)."""
    command.add_argument("--models", type=_names, help="comma-separated, default all")
    command.add_argument("--python", metavar="PATH", help=PYTHON_HELP)
    if out is not None:
        command.add_argument("--out", type=Path, help=f"the folder {out} goes into "
                             f"(default: results/latest)")  # fmt: skip


DASK_HELP = ("run the --procs generator parts on the workers of this Dask scheduler, one part "
             "each (pip install -e '.[distributed]')")  # fmt: skip


def add_run(commands: Any) -> None:
    run = commands.add_parser("run", help="drive one server and report what it did")
    run.set_defaults(handler=cmd_run, interrupted="no result written")
    run.add_argument("--target", type=_target, required=True, help="HOST:PORT of the server")
    run.add_argument("--mode", choices=MODES, default=Settings.mode)
    run.add_argument("--concurrency", type=_positive(int), default=32, help="virtual clients")
    run.add_argument("--rate", type=_positive(float), help="open loop: requests per second")
    run.add_argument("--arrival", choices=ARRIVALS, default=Settings.arrival)
    run.add_argument("--duration", type=_positive(float), default=10.0, help="measured seconds")
    run.add_argument("--warmup", type=float, default=1.0, help="seconds measured, then dropped")
    run.add_argument("--timeout", type=_positive(float), default=1.0, help="seconds to a loss")
    run.add_argument("--payload-size", type=_positive(int), default=64, help="bytes of text")
    run.add_argument("--protocol", choices=PROTOCOLS, default="echo",
                     help="echo (default) or sockperf: sockperf 3.7's messages, for `sockperf "
                     "server` or a server started with --protocol sockperf")  # fmt: skip
    run.add_argument("--encoding", choices=wire.ENCODINGS, default="utf-8", help="echo only")
    run.add_argument("--prefix", default=DEFAULT_PREFIX, help="the server's reply prefix (echo)")
    run.add_argument("--procs", type=_positive(int), default=1, help="generator processes")
    run.add_argument("--dask", metavar="tcp://SCHEDULER:8786", help=DASK_HELP)
    run.add_argument("--mix", type=_mix, help="classes of requests and their shares, e.g. "
                     "echo:95,cpu=20ms:5 (each asks its work: the server needs "
                     "--work-from-request); a histogram per class")  # fmt: skip
    run.add_argument("--deal", choices=get_args(Deal), default=Settings.deal,
                     help="the mix's class: per request (default), or one per client for all "
                     "its requests, with each client's figures")  # fmt: skip
    run.add_argument("--seed", type=int, default=1, help="for Poisson arrivals and the mix")
    run.add_argument("--json", type=Path, help="write the result object to this file")
    run.add_argument("--quiet", action="store_true", help="no progress, no table")


def add_bench(commands: Any) -> None:
    bench = commands.add_parser("bench", help="the comparison matrix, into results/latest/")
    bench.set_defaults(handler=cmd_bench, interrupted="every server stopped")
    size = bench.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="a classroom-sized bench, about 75 s")
    size.add_argument("--full", action="store_true", help="more points and trials")
    _common(bench, "everything it writes")
    bench.add_argument("--work", nargs="+", type=_work, help="workloads: echo cpu=2ms io=5ms")
    bench.add_argument("--concurrency", type=_numbers(int), help="closed-loop levels: 1,4,16,64")
    bench.add_argument("--trials", type=_positive(int))
    bench.add_argument("--duration", type=_positive(float), help="measured seconds per run")
    bench.add_argument("--warmup", type=float, help="least seconds of load before each run")
    bench.add_argument(
        "--retries",
        type=int,
        choices=range(0, 10),
        metavar="N",
        help="measure a disturbed run again at most N times (default 2)",
    )
    bench.add_argument(
        "--no-probe", action="store_true", help="do not read the machine's capacity between rounds"
    )
    bench.add_argument(
        "--workers",
        type=_positive(int),
        help="for every model with workers; a cap on requests in progress stays",
    )
    bench.add_argument("--load-sweep", type=_numbers(int), help="percent of capacity: 25,50,100")
    bench.add_argument("--no-load-sweep", action="store_true")
    bench.add_argument("--no-core-sweep", action="store_true")
    bench.add_argument("--no-timeline", action="store_true", help="skip the traced burst")
    bench.add_argument("--dask", metavar="tcp://SCHEDULER:8786", help=DASK_HELP)


def add_views(commands: Any) -> None:
    for name, what in (("plot", "figures"), ("report", "report.md")):
        command = commands.add_parser(name, help=f"rebuild the {what} from a results.json")
        command.set_defaults(handler=cmd_plot if name == "plot" else cmd_report)
        command.add_argument("file", type=Path, help="a results.json written by the bench")
        command.add_argument("--out", type=Path, help="folder to write to (default: beside it)")
    mixed = commands.add_parser("mixed-report", help="redraw mixed.png, retell its findings")
    mixed.set_defaults(handler=cmd_mixed_report)
    mixed.add_argument("file", type=Path, help="a mixed.json written by `mixed`")
    mixed.add_argument("--out", type=Path, help="folder to write to (default: beside it)")
    hgrm = commands.add_parser("hgrm", help="each run's latencies as HdrHistogram's .hgrm text")
    hgrm.set_defaults(handler=cmd_hgrm)
    hgrm.add_argument("file", type=Path, help="a results.json written by the bench")
    hgrm.add_argument("--model", choices=list(MODELS), help="only this model's runs")
    hgrm.add_argument("--work", type=_work, help="only this workload's runs (cpu=2ms, echo)")
    hgrm.add_argument("--clients", type=_positive(int), help="only runs with this many clients")
    hgrm.add_argument("--out", type=Path, help="folder to write to (default: hgrm/ beside it)")
    compare = commands.add_parser("compare", help="two results files side by side, with noise")
    compare.set_defaults(handler=cmd_compare)
    compare.add_argument("a", type=Path, metavar="A", help="the baseline results.json (or folder)")
    compare.add_argument("b", type=Path, metavar="B", help="the results.json compared with it")
    compare.add_argument("--threshold", type=_percent, default=0.05, metavar="PERCENT",
                         help="smallest difference worth reporting (default: 5)")  # fmt: skip
    compare.add_argument("--all-levels", action="store_true",
                         help="every concurrency in both files, not only the highest")  # fmt: skip
    compare.add_argument("--json", type=Path, metavar="OUT", help="also write the comparison")


def add_classroom(commands: Any) -> None:
    demo = commands.add_parser("demo", help="every model live, one after another")
    demo.set_defaults(handler=cmd_demo, interrupted="every server stopped")
    _common(demo, out=None)
    demo.add_argument("--work", nargs="+", type=_work, help="default: cpu=2ms io=5ms")
    demo.add_argument("--seconds", type=_positive(float), default=DemoSettings.seconds,
                      help="per model and workload")  # fmt: skip
    demo.add_argument("--clients", type=_positive(int), default=DemoSettings.clients,
                      help="closed-loop clients")  # fmt: skip
    demo.add_argument(
        "--rounds",
        type=_positive(int),
        default=DemoSettings.rounds,
        help="models take turns this many times (--seconds shared among them)",
    )
    timeline = commands.add_parser("timeline", help="trace one burst per model and draw it")
    timeline.set_defaults(handler=cmd_timeline,
                          interrupted="every server stopped; no timeline written")  # fmt: skip
    _common(timeline, "timeline.json and its figure")
    timeline.add_argument("--burst", type=_positive(int), help="requests at once (default: cores)")
    timeline.add_argument("--repeat", type=_positive(int), default=TimelineSettings.repeat,
                          help="bursts per model, the median one drawn (default: 5)")  # fmt: skip
    timeline.add_argument("--work", nargs="+", type=_work, help="default: cpu=2ms cpu=20ms io=5ms")
    timeline.add_argument("--from", dest="saved", type=Path, help="redraw a saved timeline.json")


def add_mixed(commands: Any) -> None:
    mixed = commands.add_parser("mixed", help="one slow request among fast ones, per model")
    mixed.set_defaults(handler=cmd_mixed, interrupted="every server stopped; the runs that "
                       "ended are in mixed.json")  # fmt: skip
    _common(mixed, "mixed.json and mixed.png")
    mixed.add_argument(
        "--mix",
        type=_mix,
        default=MixedSettings.mix,
        help="classes and shares, the fast one first (default: echo:95,cpu=20ms:5)",
    )
    mixed.add_argument("--rate", type=_positive(float), default=MixedSettings.rate,
                       help="open loop, requests per second (default 200)")  # fmt: skip
    mixed.add_argument("--clients", type=_positive(int), default=MixedSettings.clients)
    mixed.add_argument("--workers", type=_positive(int), default=MixedSettings.workers,
                       help="for every model with workers (default 8, as the bench)")  # fmt: skip
    mixed.add_argument("--seconds", type=_positive(float), default=MixedSettings.seconds,
                       help="measured, per run (default 5)")  # fmt: skip
    mixed.add_argument(
        "--warmup",
        type=_positive(float),
        default=MixedSettings.warmup,
        help="seconds of load before each run's, thrown away (default 1)",
    )
    mixed.add_argument("--rounds", type=_positive(int), default=MixedSettings.rounds)
    mixed.add_argument("--switch-intervals", type=_numbers(float),
                       default=MixedSettings.switch_intervals, metavar="MS,MS,...",
                       help="for threads on one GIL (default 0.5,1,5,20)")  # fmt: skip


def add_stress(commands: Any) -> None:
    soak = commands.add_parser("soak", help="overload each model, then let off: where it lost")
    soak.set_defaults(handler=cmd_soak, interrupted="every server stopped; no soak.json written")
    _common(soak, "soak.json")
    soak.add_argument("--work", type=_work, default=SoakSettings.work, help="default: cpu=2ms")
    soak.add_argument("--overload-s", type=_positive(float), default=SoakSettings.overload_s)
    soak.add_argument("--recover-s", type=_positive(float), default=SoakSettings.recover_s)
    lossy = commands.add_parser("lossy", help="every model behind a lossy, then a narrow link")
    lossy.set_defaults(handler=cmd_lossy, interrupted="every server and namespace removed")
    _common(lossy, "lossy.json")
    lossy.add_argument("--loss", type=_positive(float), default=LossySettings.loss,
                       help="percent dropped")  # fmt: skip
    lossy.add_argument("--rate", default=LossySettings.rate,
                       help="the narrow link's rate (tc syntax)")  # fmt: skip
    lossy.add_argument("--clients", type=_positive(int), default=LossySettings.clients)
    lossy.add_argument("--seconds", type=_positive(float), default=LossySettings.seconds)
    interop = commands.add_parser(
        "interop", help="our generator against sockperf's client, on our server and sockperf's"
    )
    interop.set_defaults(handler=cmd_interop, interrupted="every server and client ended")
    _common(interop, "interop.json")
    interop.add_argument("--seconds", type=_positive(int), default=InteropSettings.seconds,
                         help="per run: sockperf's -t, whole seconds (default 2)")  # fmt: skip
    interop.add_argument("--mps", type=_positive(int), default=InteropSettings.mps,
                         help="under-load: messages per second (default 5000)")  # fmt: skip
    interop.add_argument("--trials", type=_positive(int), default=InteropSettings.trials,
                         help="runs per side and shape, the median shown (default 3)")  # fmt: skip
    interop.add_argument("--placement", choices=PLACEMENTS, default=InteropSettings.placement,
                         help="cross: server on the last core, clients on the first (default); "
                         "same: all on the first; none: unpinned")  # fmt: skip
    selftest = commands.add_parser("selftest", help="measure the generator's own cost")
    selftest.set_defaults(handler=cmd_selftest, interrupted="the servers stopped")
    selftest.add_argument("--duration", type=_positive(float), default=SelftestSettings.duration)
    selftest.add_argument("--rounds", type=_positive(int), default=SelftestSettings.rounds)


def add_checks(commands: Any) -> None:
    """The benchmarks behind make bench-models and bench-stop, what tracing costs, and how
    the kernel spreads clients where it picks the socket."""
    models = commands.add_parser("models", help="every model at its bound, with a simple client")
    models.set_defaults(handler=cmd_models, interrupted="every server stopped")
    models.add_argument("--segment", type=_positive(float), default=ModelsSettings.segment,
                        help="measured s per turn")  # fmt: skip
    models.add_argument("--warmup", type=float, default=ModelsSettings.warmup,
                        help="s thrown away per turn")  # fmt: skip
    models.add_argument("--rounds", type=_positive(int), default=ModelsSettings.rounds,
                        help="turns per server")  # fmt: skip
    models.add_argument("--json", type=Path, help="also write every trial's figures here")
    models.add_argument("--strict", action="store_true", help="exit 1 if an expectation fails")
    stops = commands.add_parser("stops", help="start and stop every model, half in a flood")
    stops.set_defaults(handler=cmd_stops, interrupted="every server stopped")
    stops.add_argument("--models", type=_names, help="comma-separated, default all")
    stops.add_argument("--tries", type=_positive(int), default=StopsSettings.tries,
                       help="cycles in a flood per model, as many idle (default 10)")  # fmt: skip
    spread = commands.add_parser(
        "spread", help="each worker's share of the clients where the kernel picks the socket "
        "(SO_REUSEPORT): many client sockets, and one"
    )  # fmt: skip
    spread.set_defaults(handler=cmd_spread, interrupted="every server stopped")
    spread.add_argument("--models", type=_names, help="comma-separated (default: every model "
                        "that binds with reuse_port)")  # fmt: skip
    spread.add_argument("--python", metavar="PATH", help=PYTHON_HELP)
    spread.add_argument("--workers", type=_numbers(int), default=SpreadSettings.workers,
                        help="worker counts, comma-separated (default 2,4)")  # fmt: skip
    spread.add_argument("--clients", type=_numbers(int), default=SpreadSettings.clients,
                        help="client sockets, comma-separated (default 16,1)")  # fmt: skip
    spread.add_argument("--seconds", type=_positive(float), default=SpreadSettings.seconds,
                        help="of load per server (default 2)")  # fmt: skip
    spread.add_argument("--rounds", type=_positive(int), default=SpreadSettings.rounds,
                        help="servers per point, fresh client ports each (default 2)")  # fmt: skip
    cost = commands.add_parser("trace-cost", help="what --trace costs a server, alternated")
    cost.set_defaults(handler=cmd_trace_cost, interrupted="every server stopped")
    pythons = commands.add_parser(
        "pythons", help="every CPython 3.11+ here or provided (3.14, 3.15: a Debian sid chroot), "
        "one --python path per line; made once, kept in ~/.cache/udp-concurrency-lab"
    )  # fmt: skip
    pythons.set_defaults(handler=cmd_pythons, interrupted="nothing half-made is kept")


def add_screenshot(commands: Any) -> None:
    shot = commands.add_parser("screenshot", help="a PNG of a page (say report.html) as headless "
                               "Chromium shows it; prints the PNG's path")  # fmt: skip
    shot.set_defaults(handler=cmd_screenshot, interrupted="the browser closed, no PNG written")
    shot.add_argument("file", type=Path, help="the page, e.g. results/latest/report.html")
    shot.add_argument("--out", type=Path, help="the PNG to write (default: beside the page)")
    shot.add_argument("--width", type=_positive(int), default=1280, help="viewport, CSS pixels")
    shot.add_argument("--height", type=_positive(int), default=900, help="viewport, CSS pixels")
    shot.add_argument("--full", action="store_true", help="the whole page, not its first screen")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m loadgen", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for add in (add_run, add_bench, add_views, add_classroom, add_mixed, add_stress, add_checks):
        add(commands)
    add_screenshot(commands)
    return parser


def settings_from(args: argparse.Namespace) -> Settings:
    if args.mode == "open" and args.rate is None:
        raise UsageError("--mode open needs --rate (requests per second)")
    if args.mode == "closed" and args.rate is not None:
        raise UsageError("--rate is for --mode open; closed loop goes as fast as replies come")
    if args.warmup < 0:
        raise UsageError("--warmup cannot be negative")
    if args.concurrency >= wire.MAX_CLIENTS:
        raise UsageError(f"--concurrency must be below {wire.MAX_CLIENTS}")
    if args.procs > args.concurrency:
        raise UsageError("--procs cannot exceed --concurrency (each process drives its own)")
    if args.protocol == "sockperf" and (args.encoding, args.prefix) != ("utf-8", DEFAULT_PREFIX):
        raise UsageError("--encoding and --prefix are for --protocol echo; sockperf's are binary")
    if args.deal != "request" and not args.mix:
        raise UsageError("--deal says how --mix's classes are dealt: give a --mix")
    if args.mix and args.protocol != "echo":
        raise UsageError("--mix asks each request's work in its text: --protocol echo only")
    try:
        wire.check_payload(args.payload_size, args.encoding, protocol=args.protocol)
        if args.mix:  # the mark rides in front of the payload
            wire.check_payload(args.payload_size + args.mix.mark_size, args.encoding)
    except ValueError as error:
        raise UsageError(str(error)) from None
    host, port = args.target
    return Settings(
        host=host, port=port, mode=args.mode, concurrency=args.concurrency,
        rate=args.rate or 0.0, arrival=args.arrival, duration=args.duration, warmup=args.warmup,
        timeout=args.timeout, payload_size=args.payload_size, encoding=args.encoding,
        prefix=args.prefix, procs=args.procs, seed=args.seed, protocol=args.protocol,
        mix=args.mix, deal=args.deal,
    )  # fmt: skip


def cmd_run(args: argparse.Namespace) -> int:
    from loadgen.analysis.results import write_json_atomically
    from loadgen.generator import display
    from loadgen.generator.runner import run

    settings = settings_from(args)
    with display.progress(settings, enabled=not args.quiet) as on_progress:
        if args.dask:
            from loadgen.generator import cluster

            result = cluster.run(settings, args.dask, on_progress)
        else:
            result = run(settings, on_progress)
    if args.json:
        write_json_atomically(args.json, result)
    if not args.quiet:
        display.print_result(result)
    for lost in result.get("lost_parts", []):
        print(f"error: generator part {lost['part']} on {lost['worker']} was lost "
              f"({lost['lost_reason']}): its requests sent and not answered are counted as lost, "
              "and what it sent after its last report is unknown", file=sys.stderr)  # fmt: skip
    return 1 if result.get("lost_parts") else 0


def cmd_bench(args: argparse.Namespace) -> int:
    from loadgen.experiments.bench import run_bench

    folder = run_bench(bench_settings(args))
    for path in _render(folder / "results.json"):
        print(f"wrote {path}", flush=True)
    return 0


def _render(results: Path, out: Path | None = None) -> list[Path]:
    from loadgen.views.render import render_all

    try:
        return render_all(results, out)
    except ValueError as error:
        raise UsageError(str(error)) from None


def cmd_plot(args: argparse.Namespace) -> int:
    from loadgen.views.figures import plot_all

    try:
        written = plot_all(args.file, args.out)
    except ValueError as error:
        raise UsageError(str(error)) from None
    print("\n".join(str(path) for path in written))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """report.md and report.html, with every figure they embed drawn afresh; prints their
    paths."""
    print("\n".join(str(path) for path in _render(args.file, args.out)[-2:]))
    return 0


def cmd_hgrm(args: argparse.Namespace) -> int:
    from loadgen.views.hgrm import write_all

    try:
        written = write_all(args.file, args.out, model=args.model, clients=args.clients,
                            work=args.work.spec if args.work else None)  # fmt: skip
    except ValueError as error:
        raise UsageError(str(error)) from None
    print("\n".join(str(path) for path in written))
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from loadgen.views.compare import main as compare

    return compare(path_a=args.a, path_b=args.b, threshold=args.threshold,
                   all_levels=args.all_levels, json_out=args.json)  # fmt: skip


def cmd_demo(args: argparse.Namespace) -> int:
    from loadgen.experiments.demo import main as demo

    return demo(DemoSettings(
        models=args.models, works=_given(args.work, DemoSettings().works), seconds=args.seconds,
        clients=args.clients, rounds=args.rounds, python=args.python,
    ))  # fmt: skip


def cmd_timeline(args: argparse.Namespace) -> int:
    from loadgen.experiments.timeline import record_timeline
    from loadgen.views.timeline import redraw

    try:
        if args.saved:
            print(redraw(args.saved, args.out))
            return 0
        settings = TimelineSettings(
            models=args.models, works=_given(args.work, TimelineSettings().works),
            burst=args.burst, repeat=args.repeat, out=_given(args.out, TimelineSettings.out),
            python=args.python,
        )  # fmt: skip
        print(redraw(record_timeline(settings), settings.out))
    except (ValueError, OSError) as error:
        raise UsageError(str(error)) from None
    return 0


def cmd_soak(args: argparse.Namespace) -> int:
    from loadgen.experiments.soak import main as soak

    return soak(SoakSettings(
        models=args.models, work=args.work, overload_s=args.overload_s,
        recover_s=args.recover_s, out=_given(args.out, SoakSettings.out), python=args.python,
    ))  # fmt: skip


def cmd_mixed(args: argparse.Namespace) -> int:
    from loadgen.experiments.mixed import main as mixed

    out = _given(args.out, MixedSettings.out)
    status = mixed(MixedSettings(
        models=args.models, mix=args.mix, rate=args.rate, clients=args.clients,
        workers=args.workers, seconds=args.seconds, warmup=args.warmup, rounds=args.rounds,
        switch_intervals=tuple(args.switch_intervals), out=out, python=args.python,
    ))  # fmt: skip
    return status or _mixed_report(out / "mixed.json", None)


def cmd_mixed_report(args: argparse.Namespace) -> int:
    return _mixed_report(args.file, args.out)


def _mixed_report(path: Path, out: Path | None) -> int:
    from loadgen.views.mixed import write

    try:
        png, sentences = write(path, out)
    except (OSError, ValueError) as error:
        raise UsageError(f"cannot read {path}: {error}") from None
    for sentence in sentences:
        print(f"- {sentence}")
    print(f"wrote {png}")
    return 0


def cmd_lossy(args: argparse.Namespace) -> int:
    from loadgen.experiments.lossy import main as lossy

    return lossy(LossySettings(
        models=args.models, loss=args.loss, rate=args.rate, clients=args.clients,
        seconds=args.seconds, out=_given(args.out, LossySettings.out), python=args.python,
    ))  # fmt: skip


def cmd_interop(args: argparse.Namespace) -> int:
    from loadgen.experiments.interop import SockperfMissing
    from loadgen.experiments.interop import main as interop

    try:
        return interop(InteropSettings(
            models=args.models, seconds=args.seconds, mps=args.mps, trials=args.trials,
            placement=args.placement, out=_given(args.out, InteropSettings.out),
            python=args.python,
        ))  # fmt: skip
    except SockperfMissing as error:
        raise UsageError(str(error)) from None


def cmd_selftest(args: argparse.Namespace) -> int:
    from loadgen.experiments.selftest import main as selftest

    return selftest(SelftestSettings(duration=args.duration, rounds=args.rounds))


def cmd_models(args: argparse.Namespace) -> int:
    from loadgen.experiments.models import main as models

    return models(ModelsSettings(segment=args.segment, warmup=args.warmup, rounds=args.rounds,
                                 json=args.json, strict=args.strict))  # fmt: skip


def cmd_stops(args: argparse.Namespace) -> int:
    from loadgen.experiments.stops import main as stops

    return stops(StopsSettings(models=args.models, tries=args.tries))


def cmd_spread(args: argparse.Namespace) -> int:
    from loadgen.experiments.spread import main as spread

    return spread(SpreadSettings(
        models=args.models, workers=tuple(args.workers), clients=tuple(args.clients),
        seconds=args.seconds, rounds=args.rounds, python=args.python,
    ))  # fmt: skip


def cmd_trace_cost(args: argparse.Namespace) -> int:
    from loadgen.experiments.trace_cost import main as trace_cost

    return trace_cost()


def cmd_pythons(args: argparse.Namespace) -> int:
    """Paths on stdout, one per line; what was made, and why a version is missing, on stderr."""
    from loadgen.harness.pythons import provide

    for entry in provide(say=lambda line: print(line, file=sys.stderr, flush=True)):
        if entry.python:
            print(entry.python, flush=True)
            print(f"  {entry.version}: {entry.source}", file=sys.stderr, flush=True)
        else:
            print(f"  {entry.version}: missing: {entry.missing}", file=sys.stderr, flush=True)
    return 0


def cmd_screenshot(args: argparse.Namespace) -> int:
    """The page at --width x --height (the first screen, or all of it with --full) as a PNG."""
    from loadgen.views.browser import Browser, find_chromium

    if not args.file.is_file():
        raise UsageError(f"no such file: {args.file}")
    chromium = find_chromium()
    if chromium is None:
        raise UsageError("no Chromium found (chromium, chromium-browser, google-chrome): "
                         "apt-get install chromium, as make does where it is root")  # fmt: skip
    out = _given(args.out, args.file.with_suffix(".png"))
    with Browser(chromium) as browser:
        browser.open(args.file.resolve().as_uri(), width=args.width, height=args.height)
        png = browser.screenshot(full=args.full)
    out.write_bytes(png)
    print(out)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Parse, run the command's function, and turn its failure into one line and a status."""
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except KeyboardInterrupt:
        print(f"\ninterrupted: {getattr(args, 'interrupted', 'stopped')}", file=sys.stderr)
        return 130
    except USAGE_ERRORS as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except RuntimeError as error:  # a server that would not start or stop, a failed run
        print(f"error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
