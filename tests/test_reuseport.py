"""What the shared suite cannot see of the reuseport model: the kernel's hash decides who serves.

The shared suites (test_models.py, test_conformance.py) run reuseport like every model; here:
one client lands on one worker, many spread, a killed worker's socket is served again by its
replacement, and the port must be free, even of another reuseport server's group.
"""

from __future__ import annotations

import os
import select
import signal
import socket
import time

import psutil
import pytest
from helpers import exchange, udp_client, wait_gone
from test_supervision import wait_for_workers, workers_of

from servers import MODELS
from servers.protocol import DEFAULT_PREFIX
from servers.runtime import StartError, bind, bind_beside
from servers.supervision import RESTART_LIMIT

MODEL = next(name for name, model in MODELS.items() if model.reuse_port)


def ask_from_each(address: tuple[str, int], clients: list[socket.socket], rounds: int = 1) -> None:
    """Every client sends, then every reply is read and checked: all in flight at once."""
    for round_number in range(rounds):
        for i, client in enumerate(clients):
            client.sendto(f"{i}/{round_number}".encode(), address)
        for i, client in enumerate(clients):
            assert client.recv(2048) == f"{DEFAULT_PREFIX}{i}/{round_number}".encode()


def test_the_registry_entry_binds_with_so_reuseport():
    assert MODELS[MODEL].forks and MODELS[MODEL].parallel == "always"
    assert [name for name, model in MODELS.items() if model.reuse_port] == [MODEL]


def test_bind_beside_joins_the_group_on_the_port_that_port_zero_picked():
    first = bind("127.0.0.1", 0, reuse_port=True)
    others = [bind_beside(first) for _ in range(3)]
    try:
        for sock in (first, *others):
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) == 1
            assert sock.getsockname() == first.getsockname()
        plain = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        with plain, pytest.raises(OSError):  # no SO_REUSEPORT: kept out of the group
            plain.bind(first.getsockname())
    finally:
        for sock in (first, *others):
            sock.close()


def test_a_port_held_by_another_group_is_in_use_and_not_joined():
    """Without the plain bind that checks the port first, a second reuseport server of the
    same user would join the first one's group silently and take some of its clients."""
    held = bind("127.0.0.1", 0, reuse_port=True)
    with held, pytest.raises(StartError, match="already in use"):
        bind("127.0.0.1", held.getsockname()[1], reuse_port=True)


@pytest.mark.slow
def test_a_port_taken_by_a_plain_socket_is_the_usual_one_line_error(start_server):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as holder:
        holder.bind(("127.0.0.1", 0))
        port = holder.getsockname()[1]
        busy = start_server(MODEL, wait=False, port=str(port))
        assert busy.proc.wait(30) == 2
        assert busy.next_event() is None
        lines = [line for line in busy.stderr.splitlines() if line.strip()]
        assert lines == [f"error: cannot bind UDP 127.0.0.1:{port}: already in use"]


@pytest.mark.slow
def test_a_second_reuseport_server_on_the_same_port_is_refused(start_server):
    first = start_server(MODEL)
    second = start_server(MODEL, wait=False, port=str(first.ready["port"]))
    assert second.proc.wait(30) == 2
    assert "already in use" in second.stderr
    assert exchange(first.address, b"mine") == f"{DEFAULT_PREFIX}mine".encode()
    assert first.stop()["handled"] == 1


@pytest.mark.slow
def test_one_client_socket_lands_on_exactly_one_worker(start_server):
    server = start_server(MODEL, "--workers", "4")
    with udp_client() as client:
        ask_from_each(server.address, [client], rounds=200)
    per_worker = server.stop()["per_worker"]
    assert sorted(per_worker.values()) == [0, 0, 0, 200], per_worker


@pytest.mark.slow
@pytest.mark.parametrize("workers", [2, 4])
def test_many_client_sockets_spread_over_more_than_one_worker(start_server, workers):
    server = start_server(MODEL, "--workers", str(workers))
    clients = [udp_client() for _ in range(64)]  # a source port each: 64 different hashes
    try:
        ask_from_each(server.address, clients, rounds=3)
    finally:
        for client in clients:
            client.close()
    stopped = server.stop()
    assert len(stopped["per_worker"]) == workers
    assert sum(stopped["per_worker"].values()) == stopped["handled"] == 64 * 3
    busy = [count for count in stopped["per_worker"].values() if count]
    assert len(busy) > 1, stopped["per_worker"]  # which ones and how many: the kernel's hash
    assert all(count % 3 == 0 for count in busy)  # a client stays on its worker, every round


def answered_within(clients: list[socket.socket], seconds: float) -> set[int]:
    """Which clients got their reply within ``seconds``."""
    answered: set[int] = set()
    deadline = time.monotonic() + seconds
    while len(answered) < len(clients) and (left := deadline - time.monotonic()) > 0:
        ready, _, _ = select.select(clients, [], [], left)
        answered |= {clients.index(client) for client in ready if client.recv(2048)}
    return answered


@pytest.mark.slow
def test_a_killed_worker_is_replaced_and_serves_its_socket_again(start_server):
    """process-0 is killed while its parent is paused (no supervision): its socket stays in
    the group, so the clients hashed to it get no answer until the parent goes on and the
    replacement takes the socket over and answers what waited in its queue."""
    server = start_server(MODEL, "--workers", "2")
    victim = psutil.Process(server.ready["worker_pids"][0])
    clients = [udp_client() for _ in range(32)]  # 2**-31: the chance all hash to one socket
    os.kill(server.pid, signal.SIGSTOP)
    try:
        victim.kill()
        assert wait_gone([victim], timeout=2.0) == []  # a zombie: nobody reads its socket
        for i, client in enumerate(clients):
            client.sendto(f"{i}/0".encode(), server.address)
        at_once = answered_within(clients, 1.0)  # process-1's clients: it serves on
    finally:
        os.kill(server.pid, signal.SIGCONT)
    try:
        assert 0 < len(at_once) < len(clients)
        for i in set(range(len(clients))) - at_once:  # late, from the replacement
            assert clients[i].recv(2048) == f"{DEFAULT_PREFIX}{i}/0".encode()
        wait_for_workers(server, 2, {victim.pid})
        ask_from_each(server.address, clients)
    finally:
        for client in clients:
            client.close()
    stopped = server.stop()
    assert stopped["restarts"] == {"process-0": 1, "process-1": 0}
    assert stopped["handled"] == 32 * 2 and stopped["forced"] == 0
    # each client stayed on its socket: process-0's row is the replacement's, those it kept
    assert stopped["per_worker"]["process-0"] == 2 * (32 - len(at_once)), stopped
    assert "worker process-0 ended (exit code -9); restarting" in server.stderr


@pytest.mark.slow
def test_giving_up_on_dying_workers_wakes_every_socket(start_server):
    """The supervisor's stop shuts every worker's socket down, not server.sock's alone: the
    workers left return at once instead of being killed after the grace period."""
    server = start_server(MODEL, "--workers", "3")
    killed: set[int] = set()
    started = time.monotonic()
    for _ in range(RESTART_LIMIT):
        pids = wait_for_workers(server, 3, killed) if killed else workers_of(server)
        victim = min(pids)
        os.kill(victim, signal.SIGKILL)
        killed.add(victim)
    tree = server.tree()
    assert server.proc.wait(10) == 1
    event = server.next_event()
    assert event["event"] == "stopped" and event["forced"] == 0, event
    assert time.monotonic() - started < 10
    assert wait_gone(tree, timeout=2.0) == []


@pytest.mark.slow
def test_ipv6_workers_join_the_group_on_the_same_address(start_server):
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("no ::1 on this machine")
    server = start_server(MODEL, "--host", "::1", "--workers", "2")
    clients = [udp_client(socket.AF_INET6) for _ in range(32)]
    try:
        ask_from_each(("::1", server.ready["port"]), clients)
    finally:
        for client in clients:
            client.close()
    stopped = server.stop()
    assert stopped["handled"] == 32 and all(stopped["per_worker"].values()), stopped


@pytest.mark.slow
def test_the_spread_command_shows_one_client_on_one_worker(capsys):
    from loadgen.__main__ import main

    assert main(["spread", "--workers", "2", "--clients", "1", "--seconds", "0.3",
                 "--rounds", "1"]) == 0  # fmt: skip
    line = capsys.readouterr().out.strip()
    assert line.startswith(f"{MODEL} ") and "(1 of 2 busy" in line, line
    assert sorted(line.split(": ")[1].split()[:2]) == ["0%", "100%"], line
