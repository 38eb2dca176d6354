"""python -m loadgen lossy: every model behind a lossy link, then a narrow one, for real.

    python -m loadgen lossy [--models a,b] [--loss 5] [--rate 256kbit] [--clients 16]
                            [--seconds 3] [--out results/latest] [--python PATH]

Each model's server runs on a test host of our own (``loadgen.harness.testhost``: a network
namespace joined by a veth pair); the generator stays here and drives it in closed loop, echo, for
``--seconds``. First the link drops ``--loss`` percent of the datagrams coming into the host
(nftables), then it carries at most ``--rate`` (a tbf queue on our end). For each, the table
gives what the client saw (replies/s, p50, p99, lost) and where the datagrams went: dropped by
the loss rule, or by the narrow link's queue. Writes ``lossy.json`` into ``--out``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loadgen.analysis.results import DEFAULT_OUT, write_json_atomically
from loadgen.generator import runner
from loadgen.generator.engine import Settings
from loadgen.harness.pythons import runnable
from loadgen.harness.server import start_model
from loadgen.harness.testhost import TestHost
from servers import NAME_WIDTH
from servers.work import ECHO


def drive(host: TestHost, model: str, clients: int, seconds: float,
          python: str | None) -> dict[str, Any]:  # fmt: skip
    with start_model(model, ECHO, 8, extra=("--host", host.address), python=python,
                     wrap=host.wrap) as server:  # fmt: skip
        server.wait_ready()
        before = host.nft_drops() if host.loss_percent else host.qdisc_drops()
        settings = Settings(host.address, server.ready["port"], concurrency=clients,
                            duration=seconds, warmup=0.0)  # fmt: skip
        result = runner.run_here(settings)
        after = host.nft_drops() if host.loss_percent else host.qdisc_drops()
        stopped = server.stop_or_none()
    return {
        "model": model, "replies_rps": result["throughput_rps"],
        "p50_us": result["latency_us"]["p50"], "p99_us": result["latency_us"]["p99"],
        "sent": result["sent"], "received": result["received"], "lost": result["lost"],
        "in_flight": result["in_flight"], "late": result["late"],
        "dropped_on_the_link": after - before,
        "server_handled": stopped["handled"] if stopped else None,
    }  # fmt: skip


def table(title: str, rows: list[dict[str, Any]]) -> str:
    lines = [title, f"{'model':{NAME_WIDTH}}  replies/s   p50 ms   p99 ms    sent    lost  "
                    "dropped on the link  server answered"]  # fmt: skip
    for row in rows:
        p50, p99 = ((row[key] or 0) / 1000 for key in ("p50_us", "p99_us"))
        lines.append(
            f"{row['model']:{NAME_WIDTH}}  {row['replies_rps']:9,.0f}  {p50:7.2f}  {p99:7.1f}  "
            f"{row['sent']:6,}  {row['lost'] + row['in_flight']:6,}  "
            f"{row['dropped_on_the_link']:19,}  {row['server_handled'] or 0:15,}"
        )
    return "\n".join(lines)


@dataclass(frozen=True)
class LossySettings:
    models: list[str] | None = None  # None: every model the servers' Python can run
    loss: float = 5.0  # percent of datagrams the lossy link drops
    rate: str = "256kbit"  # the narrow link's rate (tc's syntax)
    clients: int = 16
    seconds: float = 3.0  # per model and link
    out: Path = DEFAULT_OUT  # the folder lossy.json goes into
    python: str | None = None  # the servers' interpreter (None: this one)


def main(settings: LossySettings) -> int:
    loss, rate, clients, seconds, python = (settings.loss, settings.rate, settings.clients,
                                            settings.seconds, settings.python)  # fmt: skip
    server_python, models, skipped = runnable(python, settings.models)
    conditions = {f"{loss:g}% loss": {"loss_percent": loss}, f"a {rate} link": {"rate": rate}}
    data: dict[str, Any] = {"clients": clients, "seconds": seconds, "work": "echo",
                            "server_python": server_python, "skipped": skipped,
                            "conditions": {}}  # fmt: skip
    for name, options in conditions.items():
        with TestHost(**options) as host:
            rows = [drive(host, model, clients, seconds, python) for model in models]
        data["conditions"][name] = rows
        print(table(f"With {name}, {clients} clients in closed loop, echo:", rows), flush=True)
    path = settings.out / "lossy.json"
    write_json_atomically(path, data)
    print(f"wrote {path}")
    return 0
