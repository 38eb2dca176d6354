"""python -m servers MODEL [options]: run one model of the echo-and-reply UDP server.

Stdout carries JSON-lines events only ("ready", then "stopped"); human messages go to stderr.
"""

from __future__ import annotations

import argparse
import json
import sys

from servers import MODELS
from servers.protocol import DEFAULT_MAX_SIZE, DEFAULT_PREFIX, PROTOCOLS, WorkLimits

MAX_UDP_PAYLOAD = 65507  # IPv4: 65535 - 20 (IP header) - 8 (UDP header)


def _work_spec(text: str):
    from servers.work import parse

    try:
        return parse(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _bounded_int(low: int, high: int):
    def convert(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is not between {low} and {high}")
        return value

    return convert


def _milliseconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of milliseconds") from None
    if not 0 < value <= 60_000:
        raise argparse.ArgumentTypeError(f"{value:g} ms: give more than 0 and at most 60000")
    return value


def _add_questions(parser: argparse.ArgumentParser) -> None:
    """The options that ask instead of serving: print and exit."""
    parser.add_argument("--list", action="store_true", help="list the models and exit")
    parser.add_argument(
        "--about",
        action="store_true",
        help="print this interpreter's version, build, GIL and each model's availability as JSON",
    )
    parser.add_argument(
        "--speed",
        action="store_true",
        help="with --about: also measure the calibration loop's speed (about a second)",
    )


def _add_work_from_request(parser: argparse.ArgumentParser) -> None:
    """The options that let a request choose its own work, within caps."""
    parser.add_argument(
        "--work-from-request",
        action="store_true",
        help="echo: a request '@SPEC TEXT' (@cpu=20ms hi, @cpu=41234it,io=5ms hi) gets that "
        "work and the reply PREFIX + TEXT; a bad SPEC or one past the caps gets an error reply",
    )
    parser.add_argument(
        "--max-request-cpu",
        type=_milliseconds,
        metavar="MS",
        help="with --work-from-request: the most computation a request may ask for (100)",
    )
    parser.add_argument(
        "--max-request-wait",
        type=_milliseconds,
        metavar="MS",
        help="with --work-from-request: the most waiting (io= plus block=) a request may ask "
        "for (1000)",
    )


def _limits(args: argparse.Namespace) -> WorkLimits:
    """What a request may ask for: the caps given, else the defaults."""
    cpu_ms, wait_ms = args.max_request_cpu, args.max_request_wait
    default = WorkLimits()
    return WorkLimits(cpu_ms / 1000 if cpu_ms else default.cpu_s,
                      wait_ms / 1000 if wait_ms else default.wait_s)  # fmt: skip


def _add_switch_interval(parser: argparse.ArgumentParser) -> None:
    """The GIL's one setting: how soon a thread that wants it asks the holder to let go."""
    parser.add_argument(
        "--switch-interval",
        type=_milliseconds,
        metavar="MS",
        help="how long a thread runs before another waiting for the GIL asks for it "
        "(sys.setswitchinterval; Python's default is 5)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m servers",
        description="Run the UDP echo-and-reply server in one concurrency model.",
        epilog="models: " + ", ".join(MODELS) + " (--list describes them)",
    )
    parser.add_argument("model", nargs="?", choices=list(MODELS), metavar="MODEL")
    _add_questions(parser)
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help='address to listen on (default 127.0.0.1; "" or 0.0.0.0: every interface)',
    )
    parser.add_argument(
        "--port", type=_bounded_int(0, 65535), default=8989, help="0 picks a free port"
    )
    parser.add_argument(
        "--workers",
        type=_bounded_int(1, 100_000),
        help="threads, processes, interpreters, or a cap on greenlets or tasks in progress "
        "(default: the model's own)",
    )
    parser.add_argument(
        "--work",
        type=_work_spec,
        default="echo",
        help="per-request work: echo, cpu=2ms, cpu=150000it, io=5ms (a wait: awaited or yielding), "
        "block=5ms (a sleep that never yields), or terms joined by commas: cpu=1ms,io=5ms",
    )
    parser.add_argument(
        "--protocol",
        choices=PROTOCOLS,
        default="echo",
        help="echo: PREFIX + text (default); sockperf: answer sockperf 3.7's ping-pong and "
        "under-load messages (their pong requests), ignore and count the rest",
    )
    _add_work_from_request(parser)
    parser.add_argument("--prefix", default=DEFAULT_PREFIX, help="reply prefix (echo)")
    parser.add_argument(
        "--max-size",
        type=_bounded_int(1, MAX_UDP_PAYLOAD),
        default=DEFAULT_MAX_SIZE,
        help="largest datagram answered, in bytes (default 1024)",
    )
    _add_switch_interval(parser)
    parser.add_argument(
        "--trace",
        metavar="FILE",
        help="record every request (worker, times, CPU) and write them to FILE at stop",
    )
    parser.add_argument(
        "--interactive",
        action="store_true",
        help="blocking model only: show each message and type the reply by hand",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.about:
        from servers.interpreter import describe

        models = {name: model.unavailable_reason() for name, model in MODELS.items()}
        print(json.dumps({**describe(speed=args.speed), "unavailable": models}))
        return 0
    if args.list:
        width = max(map(len, MODELS))
        for model in MODELS.values():
            reason = model.unavailable_reason()
            note = f" (unavailable: {reason})" if reason else ""
            print(f"{model.name:{width}} {model.summary}{note}")
        return 0
    if args.model is None:
        parser.error("a MODEL is required (or --list)")
    model = MODELS[args.model]
    if model.only_one_worker and args.workers not in (None, 1):
        parser.error(f"the {model.name} model has exactly one worker; --workers must be 1")
    if args.interactive and model.name != "blocking":
        parser.error("--interactive works with the blocking model only, as in the original")
    if args.interactive and args.trace:
        parser.error("--trace records served requests; --interactive replies by hand")
    if args.interactive and args.protocol != "echo":
        parser.error("--interactive shows text messages; --protocol sockperf does not apply")
    if args.interactive and args.work.spec != "echo":
        parser.error("--interactive replies by hand; --work does not apply")
    caps = (args.max_request_cpu, args.max_request_wait)
    if not args.work_from_request and caps != (None, None):
        parser.error("--max-request-cpu and --max-request-wait cap --work-from-request: add it")
    if args.work_from_request and (args.interactive or args.protocol != "echo"):
        parser.error("--work-from-request reads echo requests; not with --interactive or sockperf")
    if len(args.prefix.encode("utf-8")) + args.max_size > MAX_UDP_PAYLOAD:
        parser.error("--prefix plus --max-size exceed the largest UDP datagram")
    if reason := model.unavailable_reason():
        parser.error(f"model {model.name} is unavailable: {reason}")

    if args.interactive:
        from servers.interactive import serve
    else:
        serve = model.load()  # first: the gevent model must monkey-patch before other imports
    from servers.runtime import Config, run

    config = Config(
        model=model.name,
        workers=model.workers(args.workers),
        work=args.work,
        host=args.host,
        port=args.port,
        prefix=args.prefix,
        protocol=args.protocol,
        max_size=args.max_size,
        trace=args.trace,
        switch_interval=args.switch_interval and args.switch_interval / 1000,
        reuse_port=model.reuse_port,
        request_limits=_limits(args) if args.work_from_request else None,
    )
    return run(serve, config)


if __name__ == "__main__":
    sys.exit(main())
