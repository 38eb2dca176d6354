"""Load from several hosts for real, on one machine: network namespaces as the hosts.

The echo server on one, the Dask scheduler on another, a Dask worker on each of two more, and
the client here, in the root namespace (``run --dask``). Skipped, with the reason, where
namespaces cannot be made or distributed is not installed.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import ROOT

from loadgen.harness.server import start_model
from loadgen.harness.testhost import HostError, TestNetwork, usable

pytestmark = pytest.mark.slow  # every test here takes seconds: real processes

distributed = pytest.importorskip("distributed", reason="pip install -e '.[distributed]'")
DASK = Path(sys.executable).parent / "dask"
SCHEDULER_PORT = 8786  # the namespace is ours: the usual port is free there


def namespaces() -> list[str]:
    done = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=10)
    return [line.split()[0] for line in done.stdout.splitlines() if line.strip()]


def start(host, *command: str) -> subprocess.Popen:
    """A Dask process on ``host``, in a session of its own so its whole group can be ended."""
    return subprocess.Popen([*host.wrap, str(DASK), *command], cwd=ROOT, start_new_session=True,
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip


def count_sources(host, port: int, sources: list[str]) -> None:
    """nftables counters on the server's host: datagrams to ``port`` from each source."""
    rules = "".join(f"  ip saddr {s} udp dport {port} counter\n" for s in sources)
    subprocess.run([*host.wrap, "nft", "-f", "-"], check=True, timeout=20, text=True, input=(
        "table inet udplab {\n chain input {\n  type filter hook input priority 0;\n"
        f"{rules} }}\n}}\n"))  # fmt: skip


def counted(host) -> dict[str, int]:
    listing = subprocess.run([*host.wrap, "nft", "list", "ruleset"], capture_output=True,
                             text=True, timeout=20, check=True).stdout  # fmt: skip
    found = {}
    for line in listing.splitlines():
        words = line.split()
        if "saddr" in words and "packets" in words:
            found[words[words.index("saddr") + 1]] = int(words[words.index("packets") + 1])
    return found


@pytest.fixture
def network():
    if reason := usable(loss=False):
        pytest.skip(reason)
    if not DASK.exists():
        pytest.skip(f"no {DASK}: pip install -e '.[distributed]'")
    made = TestNetwork(4)
    try:
        made.__enter__()
    except HostError as error:
        pytest.skip(f"cannot make the network namespaces here: {error}")
    try:
        yield made
    finally:
        made.__exit__()
        assert not [name for name in namespaces() if name.startswith(made.hosts[0].name[:-2])]


def wait_for_workers(address: str, count: int) -> None:
    client = distributed.Client(address, timeout=20, set_as_default=False)
    try:
        client.wait_for_workers(count, timeout=30)
    finally:
        client.close()


def test_two_load_hosts_through_dask(network, tmp_path):
    server_host, scheduler_host, *load_hosts = network.hosts
    scheduler = f"tcp://{scheduler_host.address}:{SCHEDULER_PORT}"
    processes = [start(scheduler_host, "scheduler", "--no-dashboard", "--host",
                       scheduler_host.address, "--port", str(SCHEDULER_PORT))]  # fmt: skip
    try:
        worker = ("worker", scheduler, "--nthreads", "1", "--no-dashboard", "--no-nanny")
        processes += [start(host, *worker, "--host", host.address) for host in load_hosts]
        with start_model("blocking", extra=("--host", server_host.address),
                         wrap=server_host.wrap) as server:  # fmt: skip
            server.wait_ready()
            nft = shutil.which("nft") is not None
            if nft:
                count_sources(server_host, server.address[1], [h.address for h in load_hosts])
            wait_for_workers(scheduler, 2)
            done = subprocess.run(
                [sys.executable, "-m", "loadgen", "run", "--target",
                 f"{server_host.address}:{server.address[1]}", "--dask", scheduler,
                 "--procs", "2", "--concurrency", "4", "--duration", "1", "--warmup", "0",
                 "--json", str(tmp_path / "run.json"), "--quiet"],
                cwd=ROOT, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
            )  # fmt: skip
            assert done.returncode == 0, done.stderr
            stopped = server.stop()
            by_source = counted(server_host) if nft else {}
    finally:
        # The workers first: a worker whose scheduler went first keeps trying to reach it.
        for process in reversed(processes):
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)
    result = json.loads((tmp_path / "run.json").read_text())
    parts = result["cluster"]["parts"]
    print(json.dumps({"parts": parts, "handled": stopped["handled"], "by_source": by_source,
                      **{k: result[k] for k in ("sent", "received", "lost", "in_flight", "late",
                                                "throughput_rps")}}))  # fmt: skip
    for key in ("sent", "received", "lost", "in_flight"):
        assert result[key] == sum(part[key] for part in parts)
    assert result["sent"] == result["received"] + result["lost"] + result["in_flight"]
    assert sorted(part["source"] for part in parts) == sorted(h.address for h in load_hosts)
    assert result["lost_parts"] == [] and result["lost"] == 0
    # No warm-up and a loss-free link: the server handled every request sent, and the probe.
    assert stopped["handled"] == result["sent"] + 1 == result["received"] + result["late"] + 1
    if nft:  # the server's own view: each load host's datagrams, exactly its part's
        for part in parts:
            assert by_source[part["source"]] == part["sent"]
