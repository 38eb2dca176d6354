"""gevent: one monkey-patched process, one greenlet per datagram, at most N at once.

monkey.patch_all() swaps the blocking socket and time.sleep for versions that, instead of
blocking, switch to another greenlet until the socket is ready or the sleep is over. So
thousands of requests can wait on ``io=5ms`` at the same time in one thread, cheaper than
threads. But there is one thread and one core: ``cpu=2ms`` work runs one greenlet at a time, with
no switch until it ends, so compute-bound requests queue exactly as in the blocking loop.
(The module is not named gevent.py, which would shadow the library.)
"""

from gevent import monkey

monkey.patch_all()  # before anything else creates a socket, a thread or a lock

import signal  # noqa: E402

import gevent  # noqa: E402
from gevent.pool import Pool  # noqa: E402

from servers.runtime import Server  # noqa: E402


def serve(server: Server) -> None:
    server.count_per_worker(["hub"])  # every greenlet runs on the one hub thread
    for stop_signal in (signal.SIGTERM, signal.SIGINT):  # handled in the loop, not mid-greenlet
        gevent.signal_handler(stop_signal, server.request_stop)
    pool = Pool(server.workers)

    server.ready()
    server.receive_loop(lambda datagram, address: pool.spawn(server.answer, datagram, address))

    if not pool.join(timeout=server.grace_left()):  # spawn blocks while N are busy
        server.forced = len(pool)
        pool.kill(timeout=1)
    server.stopped()
