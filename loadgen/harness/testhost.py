"""A test host of our own: a network namespace joined to this machine by a veth pair.

    with TestHost(loss_percent=5, rate="256kbit") as host:
        server = Server("blocking", "echo", 1, wrap=host.wrap, extra=("--host", host.address))

The namespace gets ``host.address`` on a private /30 link of its own (never another machine's:
the other end is ``host.local``, here). Loss is made in the namespace's kernel by nftables
(``numgen random``: each UDP datagram coming in is dropped with that probability; this kernel
has no netem); a narrow link is a ``tbf`` qdisc on our end of the veth, so datagrams past its
rate queue there and are dropped when its queue is full, before they reach the server.
``qdisc_drops()`` and ``nft_drops()`` say how many each dropped. Leaving the block deletes the
namespace (and the veth with it), also after an error or Ctrl-C.

Needs root, ``ip`` and ``tc`` (iproute2) and, for loss, ``nft`` (Debian's nftables); ``usable()``
says why not when one is missing.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from typing import Any


class HostError(Exception):
    """The namespace cannot be made here: one line saying why."""


def _run(*command: str, stdin: str | None = None) -> str:
    done = subprocess.run(command, capture_output=True, text=True, timeout=20, input=stdin)
    if done.returncode != 0:
        raise HostError(f"{' '.join(command)}: {done.stderr.strip() or done.returncode}")
    return done.stdout


def _namespace(name: str, veth: str, peer: str, address: str) -> None:
    """Namespace ``name`` holding ``peer``, up at ``address`` (with its prefix length), the other
    end of a veth pair whose ``veth`` end stays here, for the caller to wire up."""
    inside = ("ip", "netns", "exec", name)
    _run("ip", "netns", "add", name)
    _run("ip", "link", "add", veth, "type", "veth", "peer", "name", peer)
    _run("ip", "link", "set", peer, "netns", name)
    _run(*inside, "ip", "addr", "add", address, "dev", peer)
    _run(*inside, "ip", "link", "set", peer, "up")
    _run(*inside, "ip", "link", "set", "lo", "up")


def _remove(name: str, veth: str) -> None:
    """Delete a namespace and our end of its veth, each on its own: what was never made fails
    quietly, the rest still goes."""
    subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=20)
    subprocess.run(["ip", "link", "del", veth], capture_output=True, timeout=20)


def usable(loss: bool = True) -> str | None:
    """None if a test host can be made here, else why not."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    missing = [tool for tool in ("ip", "tc", *(["nft"] if loss else [])) if not shutil.which(tool)]
    if missing:
        return f"{', '.join(missing)} not installed (iproute2, nftables)"
    return None


class TestHost:
    __test__ = False  # not a pytest class, whatever its name

    def __init__(self, loss_percent: float = 0.0, rate: str | None = None) -> None:
        self.loss_percent, self.rate = loss_percent, rate
        tag = os.getpid() % 100_000
        self.name = f"udplab-{tag}"
        self.veth = f"vh{tag}"  # our end; interface names have at most 15 characters
        self.peer = f"vn{tag}"
        subnet = 4 * (tag % 64)  # a /30 of 10.203.<n>.0/24: distinct for concurrent runs
        self.local = f"10.203.{tag // 64 % 256}.{subnet + 1}"
        self.address = f"10.203.{tag // 64 % 256}.{subnet + 2}"
        self.wrap: tuple[str, ...] = ("ip", "netns", "exec", self.name)

    def __enter__(self) -> TestHost:
        if reason := usable(loss=self.loss_percent > 0):
            raise HostError(reason)
        try:
            _namespace(self.name, self.veth, self.peer, f"{self.address}/30")
            _run("ip", "addr", "add", f"{self.local}/30", "dev", self.veth)
            _run("ip", "link", "set", self.veth, "up")
            if self.loss_percent:
                per_mille = round(self.loss_percent * 10)
                _run(*self.wrap, "nft", "-f", "-", stdin=(
                    "table inet udplab {\n chain input {\n"
                    "  type filter hook input priority 0; policy accept;\n"
                    f"  meta l4proto udp numgen random mod 1000 < {per_mille} counter drop\n"
                    " }\n}\n"))  # fmt: skip
            if self.rate:
                _run("tc", "qdisc", "add", "dev", self.veth, "root", "tbf", "rate", self.rate,
                     "burst", "4kb", "latency", "20ms")  # fmt: skip
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *_: Any) -> None:
        _remove(self.name, self.veth)

    def qdisc_drops(self) -> int:
        """Datagrams the narrow link's queue dropped so far."""
        found = re.search(r"dropped (\d+)", _run("tc", "-s", "qdisc", "show", "dev", self.veth))
        return int(found.group(1)) if found else 0

    def nft_drops(self) -> int:
        """Datagrams the loss rule dropped so far."""
        found = re.search(r"counter packets (\d+)", _run(*self.wrap, "nft", "list", "ruleset"))
        return int(found.group(1)) if found else 0


class NetworkHost:
    """One host of a TestNetwork: its namespace, its address, the prefix that runs in it."""

    __test__ = False

    def __init__(self, name: str, address: str, veth: str, peer: str) -> None:
        self.name, self.address, self.veth, self.peer = name, address, veth, peer
        self.wrap: tuple[str, ...] = ("ip", "netns", "exec", name)


class TestNetwork:
    """Several test hosts on one private subnet, as machines on one switch would be:

        with TestNetwork(4) as network:
            server_host, scheduler_host, *load_hosts = network.hosts

    A bridge here (the switch, with ``network.local`` on it, so this namespace reaches every
    host) and one namespace per host, joined to it by a veth and given ``host.address`` on the
    same /24, so the hosts reach each other too. Leaving the block deletes the namespaces and
    the bridge, also after an error or Ctrl-C.
    """

    __test__ = False

    def __init__(self, count: int) -> None:
        tag = os.getpid() % 100_000
        self.bridge = f"ub{tag}"
        prefix = f"10.204.{tag % 256}"  # a /24 apart from TestHost's 10.203/16
        self.local = f"{prefix}.1"
        self.hosts = [
            NetworkHost(f"udplab-{tag}-{i}", f"{prefix}.{i + 2}", f"ub{tag}v{i}", f"ub{tag}p{i}")
            for i in range(count)
        ]

    def __enter__(self) -> TestNetwork:
        if reason := usable(loss=False):
            raise HostError(reason)
        try:
            _run("ip", "link", "add", self.bridge, "type", "bridge")
            _run("ip", "addr", "add", f"{self.local}/24", "dev", self.bridge)
            _run("ip", "link", "set", self.bridge, "up")
            for host in self.hosts:
                _namespace(host.name, host.veth, host.peer, f"{host.address}/24")
                _run("ip", "link", "set", host.veth, "master", self.bridge)
                _run("ip", "link", "set", host.veth, "up")
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *_: Any) -> None:
        # Each step on its own: what was never made fails quietly, the rest still goes.
        for host in self.hosts:
            _remove(host.name, host.veth)
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True, timeout=20)
