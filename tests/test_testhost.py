"""A lossy, narrow network for real: a test host in a network namespace, the server inside it,
the generator here. Skipped, with the reason, where namespaces cannot be made."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
from helpers import ROOT

from loadgen.generator import runner
from loadgen.generator.engine import Settings
from loadgen.harness.server import ServerProcess, start_model
from loadgen.harness.testhost import HostError, TestHost, usable

Z_999 = 3.29  # two-sided 99.9% of a normal: the loss rate's bound, binomial by the CLT


def namespaces() -> list[str]:
    done = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=10)
    return [line.split()[0] for line in done.stdout.splitlines() if line.strip()]


def open_loop(host: TestHost, server: ServerProcess, rate: float, seconds: float) -> dict:
    """Open loop from here to the server in the namespace (no probe: it could be the one lost)."""
    settings = Settings(host.address, server.address[1], mode="open", rate=rate,
                        concurrency=32, duration=seconds, warmup=0.0)  # fmt: skip
    return runner.run_here(settings)


@pytest.fixture
def test_host(request):
    """``test_host(loss_percent=..., rate=...)``: entered, and always removed afterwards."""
    made: list[TestHost] = []

    def make(**options) -> TestHost:
        if reason := usable(loss=bool(options.get("loss_percent"))):
            pytest.skip(reason)
        host = TestHost(**options)
        try:
            made.append(host.__enter__())
        except HostError as error:
            pytest.skip(f"cannot make a network namespace here: {error}")
        return host

    yield make
    for host in made:
        host.__exit__()
        assert host.name not in namespaces()


def load_served(host: TestHost, rate: float, seconds: float) -> tuple[dict, dict]:
    """A blocking server on the test host, open loop at ``rate`` from here: (result, stopped)."""
    with start_model("blocking", workers=1, extra=("--host", host.address),
                     wrap=host.wrap) as server:  # fmt: skip
        server.wait_ready()
        result = open_loop(host, server, rate, seconds)
        return result, server.stop()


@pytest.mark.slow
def test_configured_loss_is_what_the_generator_measures(test_host):
    host = test_host(loss_percent=10)
    result, stopped = load_served(host, 2000, 2.0)
    sent, unanswered = result["sent"], result["lost"] + result["in_flight"]
    assert sent == result["received"] + unanswered  # the accounting identity
    bound = Z_999 * math.sqrt(0.1 * 0.9 / sent)
    assert abs(unanswered / sent - 0.10) <= bound, (unanswered, sent, bound)
    assert unanswered == host.nft_drops()  # each loss is a datagram the rule dropped
    assert stopped["handled"] == result["received"]


@pytest.mark.slow
def test_a_narrow_link_drops_before_the_server(test_host):
    host = test_host(rate="256kbit")  # about 300 requests a second of 106 bytes on the wire
    result, stopped = load_served(host, 1000, 2.0)
    unanswered = result["lost"] + result["in_flight"]
    assert result["sent"] == result["received"] + unanswered
    assert unanswered > result["sent"] / 3  # the link carries well under the 1,000/s offered
    # Where they went: the link's queue, not the server (which answered all it received).
    assert abs(host.qdisc_drops() - unanswered) <= 10
    assert stopped["handled"] == result["received"]


def test_the_namespace_goes_even_when_the_block_fails():
    if reason := usable(loss=False):
        pytest.skip(reason)
    host = TestHost()
    with pytest.raises(RuntimeError, match="inside"):
        try:
            with host:
                assert host.name in namespaces()
                raise RuntimeError("inside")
        except HostError as error:
            pytest.skip(f"cannot make a network namespace here: {error}")
    assert host.name not in namespaces()


@pytest.mark.slow
def test_the_lossy_command_reports_where_the_datagrams_went(tmp_path):
    if reason := usable(loss=True):
        pytest.skip(reason)
    done = subprocess.run(
        [sys.executable, "-m", "loadgen", "lossy", "--models", "blocking", "--loss", "20",
         "--seconds", "1", "--out", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    if done.returncode != 0 and "cannot" in done.stderr:
        pytest.skip(done.stderr.strip())
    assert done.returncode == 0, done.stderr
    data = json.loads((tmp_path / "lossy.json").read_text())
    lossy, narrow = data["conditions"].values()
    for row in (*lossy, *narrow):
        assert row["sent"] == row["received"] + row["lost"] + row["in_flight"]
        assert row["server_handled"] == row["received"]  # what reached the server was answered
    assert lossy[0]["lost"] + lossy[0]["in_flight"] == lossy[0]["dropped_on_the_link"] > 0
    assert "dropped on the link" in done.stdout
    assert not [name for name in namespaces() if name.startswith("udplab-")]  # removed
