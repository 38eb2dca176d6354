"""threads: N threads, each blocking in recvfrom on the one shared socket.

The kernel hands each datagram to one waiting thread. Threads overlap while they *wait*
(recvfrom, sendto and time.sleep release the GIL), so ``io=5ms`` scales with N. But only the
thread holding the GIL runs Python, so ``cpu=2ms`` work takes turns: eight threads answer no
faster than the blocking loop and use about one core between them. That is pseudo-parallelism.
"""

from __future__ import annotations

import threading
from functools import partial

from servers.runtime import SHUT_DOWN, Server


def serve(server: Server) -> None:
    server.count_per_worker([f"thread-{i}" for i in range(server.workers)])
    threads = [
        threading.Thread(target=_thread, args=(server, i), name=f"thread-{i}", daemon=True)
        for i in range(server.workers)
    ]
    for thread in threads:
        thread.start()

    server.ready()
    forced = server.stop.join(threads)  # until a stop request shuts the socket down under them

    server.stopped(forced)


def _thread(server: Server, worker: int) -> None:
    """What each thread does, all on the same socket: the blocking loop, N times over."""
    sock, handle = server.sock, server.handle
    for datagram, address in iter(partial(sock.recvfrom, server.bufsize), SHUT_DOWN):
        if (reply := handle(datagram, worker)) is None:
            continue  # a message that asks no answer (sockperf's): counted as ignored
        try:  # recvfrom and sendto let go of the GIL; handle holds it while it computes
            sock.sendto(reply, address)
        except OSError as error:
            server.unsent(datagram, address, error, worker)
