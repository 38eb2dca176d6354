"""How a ``Server`` crosses into a sub-interpreter, and how its workers say they are up.

A sub-interpreter shares no Python object with the main one, but it shares the process, and so
its fd table: ``handoff`` writes what a worker needs as JSON text (a str crosses into any
interpreter), with the socket, the counters and the check-in pipe as fd numbers; ``adopt``, in
the sub-interpreter, rebuilds the server from it. ``CheckIns`` is that pipe: a worker writes a
line when it is about to receive, the thread that ran a worker that died writes one instead,
and the main interpreter waits for a line from each. ``start_every_worker`` uses it to make an
executor's pool start all its interpreters before the server says it is ready.
"""

from __future__ import annotations

import dataclasses
import json
import os
import select
import socket
import threading
import time
from concurrent.futures import Executor
from typing import NamedTuple

from servers.counters import Counters
from servers.protocol import WorkLimits
from servers.runtime import Config, Server
from servers.work import Work


def config_text(server: Server) -> str:
    """``server``'s configuration as text that crosses into any interpreter, with the
    calibrated work: no interpreter recalibrates."""
    return json.dumps(dataclasses.asdict(dataclasses.replace(server.config, work=server.work)))


def config_of(text: str) -> Config:
    """In a sub-interpreter: the configuration ``config_text`` wrote."""
    fields = json.loads(text)
    limits = fields["request_limits"] and WorkLimits(**fields["request_limits"])
    return Config(**{**fields, "work": Work(**fields["work"]), "request_limits": limits})


def handoff(server: Server, worker: int, check_in_fd: int) -> str:
    """What a sub-interpreter needs to rebuild ``server`` as ``worker``."""
    return json.dumps({"config": config_text(server), "socket": server.sock.fileno(),
                       "worker": worker, "labels": server.counters.labels,
                       "counters": server.counters.fd, "check_in": check_in_fd})  # fmt: skip


class Adopted(NamedTuple):
    server: Server
    worker: int  # its row in the counters
    check_in_fd: int  # where it says it is up (``CheckIns.report``)


def adopt(text: str) -> Adopted:
    """In a sub-interpreter: the server ``text`` (from ``handoff``) describes.

    Its socket is a dup of the main one: the same kernel socket and receive queue, so the
    kernel hands each datagram to one waiting reader, and the main interpreter's shutdown
    wakes this one's recvfrom too. Its trace records go to a part file, which the main
    interpreter merges.
    """
    state = json.loads(text)
    config = config_of(state["config"])
    counters = Counters.attach(state["labels"], state["counters"])
    sock = socket.socket(fileno=os.dup(state["socket"]))
    return Adopted(Server(config, sock, config.work, counters), state["worker"], state["check_in"])


class CheckIns:
    """A pipe down which workers in sub-interpreters say they are up, a line each, by fd
    number; the thread that ran a worker that died reports that instead, so waiting for
    everyone never hangs on a worker that is gone."""

    def __init__(self) -> None:
        self.read_fd, self.write_fd = os.pipe()

    @staticmethod
    def report(fd: int, worker: int, up: bool) -> None:
        os.write(fd, f"{'+' if up else 'x'}{worker}\n".encode())  # one write < PIPE_BUF: whole

    def wait(self, count: int, timeout: float) -> int:
        """Wait until ``count`` workers have reported, at most ``timeout``; return how many are
        up (a worker that came up and died since counts as died: its last report wins)."""
        last: dict[int, bool] = {}
        pending, deadline = b"", time.monotonic() + timeout
        while len(last) < count and (left := deadline - time.monotonic()) > 0:
            if select.select([self.read_fd], [], [], left)[0]:
                *lines, pending = (pending + os.read(self.read_fd, 4096)).split(b"\n")
                last.update((int(line[1:]), line[:1] == b"+") for line in lines)
        return sum(last.values())


def start_every_worker(pool: Executor, workers: int, timeout: float = 30.0) -> None:
    """Hold ``workers`` calls at once, so that ``pool`` (which starts a worker when a call
    finds none idle) must start that many, until each has said it is up: their start-up
    (an interpreter's imports) then costs no request. Raises if one could not start."""
    check_ins, (go, go_in) = CheckIns(), os.pipe()
    held = [pool.submit(hold, check_ins.write_fd, go) for _ in range(workers)]
    up = check_ins.wait(workers, timeout)
    os.write(go_in, b"x" * workers)  # let them all go
    for call in held:
        call.result()  # a worker that could not start raises here
    for fd in (go, go_in, check_ins.read_fd, check_ins.write_fd):
        os.close(fd)
    if up < workers:
        raise RuntimeError(f"{up} of {workers} pool workers up after {timeout:g} s")


def hold(check_in: int, go: int) -> None:
    """In a pool worker: say it is up (by its thread, one per worker), then wait to be let go."""
    CheckIns.report(check_in, threading.get_native_id(), up=True)
    os.read(go, 1)
