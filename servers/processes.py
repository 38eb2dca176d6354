"""processes: N forked processes, each blocking in recvfrom on the same inherited socket.

Each process has its own interpreter and its own GIL, so ``cpu=2ms`` work runs truly in
parallel, one request per core at a time: real parallelism, paid for in memory and start-up.

The socket is bound once, before the fork, and inherited: every process waits on the same
receive queue and the kernel wakes one of them per datagram. SO_REUSEPORT (a socket per
process) is the other road, the ``reuseport`` model: the kernel then spreads datagrams by a
hash of the sender's address, so one client always lands on the same process and a few clients
can leave a core idle; it also needs the option set before the first bind, and more binds on
the port that port 0 picked. Sharing the queue is fair and simple: whichever process is idle
takes the next datagram. Workers die with the parent even on SIGKILL (see
``become_worker_process``); a worker that dies alone is replaced by a new fork within 0.1 s
(``Supervisor.watch``).
"""

from __future__ import annotations

import multiprocessing
from functools import partial

from servers.runtime import SHUT_DOWN, Server, become_worker_process
from servers.supervision import Supervisor

START_TIMEOUT_S = 30


def serve(server: Server) -> None:
    server.count_per_worker([f"process-{i}" for i in range(server.workers)], shared=True)
    context = multiprocessing.get_context("fork")  # inherit the bound socket and the counters
    all_started = context.Barrier(server.workers + 1)
    processes = [
        context.Process(target=_worker, args=(server, i, all_started), name=f"process-{i}")
        for i in range(server.workers)
    ]
    for process in processes:
        process.start()
    all_started.wait(START_TIMEOUT_S)

    server.ready(worker_pids=[process.pid for process in processes])

    def replace(i: int) -> multiprocessing.Process:  # forked from here: the socket comes along
        process = context.Process(target=_worker, args=(server, i, None), name=f"process-{i}")
        process.start()
        return process

    supervisor = Supervisor(server)
    forced = supervisor.watch(processes, replace)  # until a stop request shuts the socket down

    server.stopped(forced, supervisor)


def _worker(server: Server, worker: int, all_started) -> None:
    """A forked process: the blocking loop, with a GIL of its own; its counts are shared."""
    become_worker_process()
    if all_started is not None:  # a replacement starts alone
        all_started.wait(START_TIMEOUT_S)
    sock, handle = server.sock, server.handle
    for datagram, address in iter(partial(sock.recvfrom, server.bufsize), SHUT_DOWN):
        if (reply := handle(datagram, worker)) is None:
            continue  # a message that asks no answer (sockperf's): counted as ignored
        try:
            sock.sendto(reply, address)
        except OSError as error:
            server.unsent(datagram, address, error, worker)
    server.flush_trace()  # its trace records live in this process: leave them in a file
