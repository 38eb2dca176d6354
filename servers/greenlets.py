"""gevent: one monkey-patched process, one greenlet per datagram, at most N at once.

monkey.patch_all() swaps the blocking socket and time.sleep for versions that, instead of
blocking, switch to another greenlet until the socket is ready or the sleep is over. So
thousands of requests can wait on ``io=5ms`` at the same time in one thread, cheaper than
threads. But there is one thread and one core: ``cpu=2ms`` work runs one greenlet at a time, with
no switch until it ends, so compute-bound requests queue exactly as in the blocking loop.
(The module is not named gevent.py, which would shadow the library.)

Stopping is the receiving greenlet's own: the shared ``shutdown(SHUT_RD)`` stop would leave
gevent's non-blocking recvfrom spinning (the socket polls readable and answers EAGAIN) when it
lands while datagrams are still coming in. So a stop signal kills the receiving greenlet, which
waits for a free place in the pool *before* it takes a datagram: wherever the kill finds it, it
holds none, and every datagram taken from the socket is answered or counted.
"""

from gevent import monkey

monkey.patch_all()  # before anything else creates a socket, a thread or a lock

import signal  # noqa: E402

import gevent  # noqa: E402
from gevent.pool import Pool  # noqa: E402

from servers.runtime import JOIN_POLL_S, Address, Server, log  # noqa: E402


def serve(server: Server) -> None:
    server.count_per_worker(["hub"])  # every greenlet runs on the one hub thread
    pool = Pool(server.workers)
    receiver = gevent.spawn(_receive, server, pool)

    def stop() -> None:  # run by the hub between greenlets, never in the middle of one
        server.mark_stop()  # a second one skips the grace period
        receiver.kill(block=False)

    for stop_signal in (signal.SIGTERM, signal.SIGINT):
        gevent.signal_handler(stop_signal, stop)

    server.ready()
    receiver.join()  # until a stop signal kills it

    while len(pool) and server.grace_left() > 0:  # requests in progress get the grace period
        pool.join(timeout=min(JOIN_POLL_S, server.grace_left()))
    server.forced = len(pool)
    pool.kill(timeout=1)
    server.stopped()


def _receive(server: Server, pool: Pool) -> None:
    """The receiving greenlet: it spawns a greenlet per datagram, at most N at once."""
    sock = server.sock
    while True:
        pool.wait_available()  # a free place first: the datagram below is never held at a switch
        try:
            datagram, address = sock.recvfrom(server.bufsize)  # yields to the others meanwhile
        except OSError as error:
            log(f"{server.config.model}: recvfrom failed: {error}")
            continue
        pool.spawn(_answer, server, datagram, address)  # a place is free: this never blocks


def _answer(server: Server, datagram: bytes, address: Address) -> None:
    """A greenlet per datagram: while its request waits (``io=``), the others run."""
    try:
        server.sock.sendto(server.handle(datagram), address)
    except OSError as error:
        server.unsent(datagram, address, error)
