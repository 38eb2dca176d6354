"""blocking: one loop, one request at a time.

recvfrom -> handle -> sendto, then the next datagram. While one request computes or sleeps,
every other datagram waits in the kernel's receive buffer (and is dropped once that is full).
This is the baseline every other model is measured against: one core at most, and with
``io=5ms`` at most 200 replies a second, however many clients are waiting.
"""

from __future__ import annotations

from servers.runtime import Server


def serve(server: Server) -> None:
    server.count_per_worker(["main"])

    server.ready()
    server.receive_loop(server.answer)  # answers inline: the loop waits for every request

    server.stopped()
