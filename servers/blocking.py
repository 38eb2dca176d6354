"""blocking: one loop, one request at a time.

recvfrom -> handle -> sendto, then the next datagram. While one request computes or sleeps,
every other datagram waits in the kernel's receive buffer (and is dropped once that is full).
This is the baseline every other model is measured against: one core at most, and with
``io=5ms`` at most 200 replies a second, however many clients are waiting.
"""

from __future__ import annotations

from functools import partial

from servers.runtime import SHUT_DOWN, Server


def serve(server: Server) -> None:
    server.count_per_worker(["main"])
    sock, handle = server.sock, server.handle

    server.ready()
    # recvfrom until it returns SHUT_DOWN: a stop request shut the socket down for reading
    for datagram, address in iter(partial(sock.recvfrom, server.bufsize), SHUT_DOWN):
        if (reply := handle(datagram)) is None:
            continue  # a message that asks no answer (sockperf's): counted as ignored
        try:
            sock.sendto(reply, address)  # the next datagram waits for this reply
        except OSError as error:  # a vanished route, a full buffer: counted, and on to the next
            server.unsent(datagram, address, error)

    server.stopped()
