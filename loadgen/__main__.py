"""python -m loadgen run --target HOST:PORT [...]: drive an echo server and measure it.

python -m loadgen run --target 127.0.0.1:8989 --mode closed --concurrency 32
python -m loadgen run --target 127.0.0.1:8989 --mode open --rate 5000 --json out.json
python -m loadgen selftest        # what the generator itself costs, checked two ways
python -m loadgen compare A.json B.json   # two results files side by side, noise included
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from loadgen import wire
from loadgen.engine import Settings
from servers.protocol import DEFAULT_PREFIX


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
    from loadgen.runner import parse_target

    try:
        return parse_target(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _names(text: str) -> list[str]:
    from servers import MODELS

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


def _work(text: str) -> str:
    from servers.work import parse

    try:
        parse(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return text


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


def bench_settings(args: argparse.Namespace):
    from loadgen.bench import PRESETS, BenchSettings

    preset = PRESETS["quick" if args.quick else "full" if args.full else "default"]
    settings = BenchSettings(**preset)
    chosen = {
        "models": args.models,
        "works": args.work,
        "concurrency": args.concurrency,
        "trials": args.trials,
        "duration": args.duration,
        "warmup": args.warmup,
        "workers": args.workers,
        "load_sweep": [] if args.no_load_sweep else args.load_sweep,
        "out": args.out,
        "python": args.python,
    }
    for key, value in chosen.items():
        if value is not None:
            setattr(settings, key, value)
    if args.no_core_sweep:
        settings.core_sweep = False
    if args.no_timeline:
        settings.timeline = False
    return settings


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m loadgen", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="drive one server and report what it did")
    run.add_argument("--target", type=_target, required=True, help="HOST:PORT of the server")
    run.add_argument("--mode", choices=("closed", "open"), default="closed")
    run.add_argument("--concurrency", type=_positive(int), default=32, help="virtual clients")
    run.add_argument("--rate", type=_positive(float), help="open loop: requests per second")
    run.add_argument("--arrival", choices=("uniform", "poisson"), default="uniform")
    run.add_argument("--duration", type=_positive(float), default=10.0, help="measured seconds")
    run.add_argument("--warmup", type=float, default=1.0, help="seconds measured, then dropped")
    run.add_argument("--timeout", type=_positive(float), default=1.0, help="seconds to a loss")
    run.add_argument("--payload-size", type=_positive(int), default=64, help="bytes of text")
    run.add_argument("--encoding", choices=wire.ENCODINGS, default="utf-8")
    run.add_argument("--prefix", default=DEFAULT_PREFIX, help="the server's reply prefix")
    run.add_argument("--procs", type=_positive(int), default=1, help="generator processes")
    run.add_argument("--seed", type=int, default=1, help="for Poisson arrivals")
    run.add_argument("--json", type=Path, help="write the result object to this file")
    run.add_argument("--quiet", action="store_true", help="no progress, no table")

    bench = commands.add_parser("bench", help="the comparison matrix, into results/latest/")
    size = bench.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="a classroom-sized bench, under 60 s")
    size.add_argument("--full", action="store_true", help="more points and trials")
    bench.add_argument("--models", type=_names, help="comma-separated, default all")
    bench.add_argument("--work", nargs="+", type=_work, help="workloads: echo cpu=2ms io=5ms")
    bench.add_argument("--concurrency", type=_numbers(int), help="closed-loop levels: 1,4,16,64")
    bench.add_argument("--trials", type=_positive(int))
    bench.add_argument("--duration", type=_positive(float), help="measured seconds per run")
    bench.add_argument("--warmup", type=float, help="seconds of load before each run")
    bench.add_argument(
        "--workers",
        type=_positive(int),
        help="for every model with workers; those with a cap on requests in progress keep it",
    )
    bench.add_argument("--load-sweep", type=_numbers(int), help="percent of capacity: 25,50,100")
    bench.add_argument("--no-load-sweep", action="store_true")
    bench.add_argument("--no-core-sweep", action="store_true")
    bench.add_argument("--no-timeline", action="store_true", help="skip the traced burst")
    bench.add_argument("--out", type=Path, help="results folder (default: results/)")

    for name, what in (("plot", "figures"), ("report", "report.md")):
        command = commands.add_parser(name, help=f"rebuild the {what} from a results.json")
        command.add_argument("file", type=Path, help="a results.json written by the bench")
        command.add_argument("--out", type=Path, help="folder to write to (default: beside it)")

    compare = commands.add_parser("compare", help="two results files side by side, with noise")
    compare.add_argument("a", type=Path, metavar="A", help="the baseline results.json (or folder)")
    compare.add_argument("b", type=Path, metavar="B", help="the results.json compared with it")
    compare.add_argument("--threshold", type=_percent, default=0.05, metavar="PERCENT",
                         help="smallest difference worth reporting (default: 5)")  # fmt: skip
    compare.add_argument("--all-levels", action="store_true",
                         help="every concurrency in both files, not only the highest")  # fmt: skip
    compare.add_argument("--json", type=Path, metavar="OUT", help="also write the comparison")

    demo = commands.add_parser("demo", help="every model live, one after another")
    demo.add_argument("--models", type=_names, help="comma-separated, default all")
    demo.add_argument("--work", nargs="+", type=_work, help="default: cpu=2ms io=5ms")
    demo.add_argument("--seconds", type=_positive(float), default=2.0, help="per model")
    demo.add_argument("--clients", type=_positive(int), default=16, help="closed-loop clients")

    timeline = commands.add_parser("timeline", help="trace one burst per model and draw it")
    timeline.add_argument("--burst", type=_positive(int), help="requests at once (default: cores)")
    timeline.add_argument("--repeat", type=_positive(int), default=5,
                          help="bursts per model, the median one drawn (default: 5)")  # fmt: skip
    timeline.add_argument("--models", type=_names, help="comma-separated, default all")
    timeline.add_argument("--work", nargs="+", type=_work, help="default: cpu=2ms cpu=20ms io=5ms")
    timeline.add_argument("--out", type=Path, default=Path("results/latest"))
    timeline.add_argument("--from", dest="saved", type=Path, help="redraw a saved timeline.json")

    soak = commands.add_parser("soak", help="overload each model, then let off: where it lost")
    soak.add_argument("--models", type=_names, help="comma-separated, default all")
    soak.add_argument("--work", type=_work, default="cpu=2ms", help="default: cpu=2ms")
    soak.add_argument("--overload-s", type=_positive(float), default=10.0)
    soak.add_argument("--recover-s", type=_positive(float), default=5.0)
    soak.add_argument("--out", type=Path, default=Path("results/latest"))

    lossy = commands.add_parser("lossy", help="every model behind a lossy, then a narrow link")
    lossy.add_argument("--models", type=_names, help="comma-separated, default all")
    lossy.add_argument("--loss", type=_positive(float), default=5.0, help="percent dropped")
    lossy.add_argument("--rate", default="256kbit", help="the narrow link's rate (tc syntax)")
    lossy.add_argument("--clients", type=_positive(int), default=16)
    lossy.add_argument("--seconds", type=_positive(float), default=3.0)
    lossy.add_argument("--out", type=Path, default=Path("results/latest"))

    for command in (bench, demo, timeline, soak, lossy):
        command.add_argument(
            "--python", metavar="PATH",
            help="run the servers under this interpreter (default: this one); models it "
            "cannot run are skipped with the reason",
        )  # fmt: skip

    selftest = commands.add_parser("selftest", help="measure the generator's own cost")
    selftest.add_argument("--duration", type=_positive(float), default=3.0)
    selftest.add_argument("--rounds", type=_positive(int), default=3)
    return parser


def settings_from(args: argparse.Namespace, parser: argparse.ArgumentParser) -> Settings:
    if args.mode == "open" and args.rate is None:
        parser.error("--mode open needs --rate (requests per second)")
    if args.mode == "closed" and args.rate is not None:
        parser.error("--rate is for --mode open; closed loop goes as fast as replies come")
    if args.warmup < 0:
        parser.error("--warmup cannot be negative")
    if args.concurrency >= wire.MAX_CLIENTS:
        parser.error(f"--concurrency must be below {wire.MAX_CLIENTS}")
    if args.procs > args.concurrency:
        parser.error("--procs cannot exceed --concurrency (each process drives its own clients)")
    try:
        wire.check_payload(args.payload_size, args.encoding)
    except ValueError as error:
        parser.error(str(error))
    host, port = args.target
    return Settings(
        host=host,
        port=port,
        mode=args.mode,
        concurrency=args.concurrency,
        rate=args.rate or 0.0,
        arrival=args.arrival,
        duration=args.duration,
        warmup=args.warmup,
        timeout=args.timeout,
        payload_size=args.payload_size,
        encoding=args.encoding,
        prefix=args.prefix,
        procs=args.procs,
        seed=args.seed,
    )


def runner_errors() -> tuple[type[Exception], ...]:
    from loadgen.pythons import InterpreterError
    from loadgen.runner import TargetError

    return (TargetError, RuntimeError, InterpreterError)


def experiment(start: Callable[[], int], on_interrupt: str, *errors: type[Exception]) -> int:
    """Run a long experiment: Ctrl-C says what was kept and exits 130; a known failure (no
    target, no interpreter, ``errors``) is one line and exit status 1, never a traceback."""
    try:
        return start()
    except KeyboardInterrupt:
        print(f"\ninterrupted: {on_interrupt}", file=sys.stderr)
        return 130
    except (*errors, *runner_errors()) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "bench":
        from loadgen.bench import run_bench

        try:
            run_bench(bench_settings(args))
        except KeyboardInterrupt:
            return 130
        except runner_errors() as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
        return 0
    if args.command in ("plot", "report"):
        from loadgen.plot import plot_all
        from loadgen.report import write_report

        try:
            written = plot_all(args.file, args.out)
            if args.command == "report":
                written = [write_report(args.file, args.out)]
        except ValueError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        for path in written:
            print(path)
        return 0
    if args.command == "compare":
        from loadgen.compare import main as compare

        return compare(args.a, args.b, args.threshold, args.all_levels, args.json)
    if args.command == "demo":
        from loadgen.demo import main as demo

        return experiment(
            lambda: demo(args.models, args.work, args.seconds, args.clients, args.python),
            "every server stopped",
        )
    if args.command == "timeline":
        from loadgen.timeline import redraw, write_timeline

        try:
            if args.saved:
                print(redraw(args.saved, args.out if args.out != Path("results/latest") else None))
            else:
                print(write_timeline(args.out, args.burst, args.models, args.work,
                                     repeat=args.repeat, python=args.python))  # fmt: skip
        except KeyboardInterrupt:
            print(f"\ninterrupted: every server stopped; nothing in {args.out} was changed",
                  file=sys.stderr)  # fmt: skip
            return 130
        except (ValueError, OSError, *runner_errors()) as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        return 0
    if args.command == "lossy":
        from loadgen.lossy import main as lossy
        from loadgen.testhost import HostError

        return experiment(
            lambda: lossy(args.models, args.loss, args.rate, args.clients, args.seconds,
                          args.out, args.python),
            "every server and namespace removed", HostError,
        )  # fmt: skip
    if args.command == "soak":
        from loadgen.soak import main as soak

        return experiment(
            lambda: soak(args.models, args.work, args.overload_s, args.recover_s, args.out,
                         args.python),
            "every server stopped; no soak.json written",
        )  # fmt: skip
    if args.command == "selftest":
        from loadgen.selftest import main as selftest

        return selftest(args.duration, args.rounds)

    from loadgen import display
    from loadgen.runner import TargetError, run

    settings = settings_from(args, parser)
    try:
        with display.progress(settings, enabled=not args.quiet) as on_progress:
            result = run(settings, on_progress)
    except TargetError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except RuntimeError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: no result written", file=sys.stderr)
        return 130
    if args.json:
        from loadgen.results import write_json_atomically

        write_json_atomically(args.json, result)
    if not args.quiet:
        display.summary(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
