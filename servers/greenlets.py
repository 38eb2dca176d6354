"""gevent: one monkey-patched process, N worker greenlets fed by one receiving greenlet.

monkey.patch_all() swaps the blocking socket and time.sleep for versions that, instead of
blocking, switch to another greenlet until the socket is ready or the sleep is over. So
thousands of requests can wait on ``io=5ms`` at the same time in one thread, cheaper than
threads. But there is one thread and one core: ``cpu=2ms`` work runs one greenlet at a time, with
no switch until it ends, so compute-bound requests queue exactly as in the blocking loop.
(The module is not named gevent.py, which would shadow the library.)

gevent lets one greenlet at a time wait to read a socket, so one greenlet receives and hands each
datagram to N long-lived workers through a queue (``--workers``: the cap on requests in progress;
with every worker busy the receiver stops reading). A greenlet spawned per datagram (a Greenlet,
a pool entry, a start, an end) costs several times more per request than a hand-off to a worker
that already exists.

The loop waits with select(), not libev's default epoll: epoll_wait takes its timeout in whole
milliseconds, rounded up, so a 5 ms sleep wakes up to 1 ms late; select() takes microseconds.
select() scans every watched fd, but this process watches two. ``GEVENT_BACKEND=epoll`` shows
the difference; docs/measurements.md ("Figures behind choices in the code") has the figures.

Stopping is the receiving greenlet's own: the shared ``shutdown(SHUT_RD)`` stop would leave
gevent's non-blocking recvfrom spinning (the socket polls readable and answers EAGAIN) when it
lands while datagrams are still coming in. So a stop signal kills the receiving greenlet, which
takes a free place *before* it takes a datagram and hands it on without a switch: wherever the
kill finds it, it holds none, and every datagram taken from the socket is answered or counted.
"""

import os

from gevent import config, monkey

config.libev_backend = os.environ.get("GEVENT_BACKEND") or "select"  # before the loop exists
monkey.patch_all()  # before anything else creates a socket, a thread or a lock

import signal  # noqa: E402

import gevent  # noqa: E402
from gevent.lock import Semaphore  # noqa: E402
from gevent.queue import SimpleQueue  # noqa: E402

from servers.runtime import Server, log  # noqa: E402


def serve(server: Server) -> None:
    server.count_per_worker(["hub"])  # every greenlet runs on the one hub thread
    places = Semaphore(server.workers)  # one per request in progress, received to sent
    inbox: SimpleQueue = SimpleQueue()  # (datagram, address), for the first idle worker
    workers = [gevent.spawn(_work, server, inbox, places) for _ in range(server.workers)]
    receiver = gevent.spawn(_receive, server, inbox, places)

    def stop() -> None:  # run by the hub between greenlets, never in the middle of one
        server.stop.ask()  # a second one skips the grace period
        receiver.kill(block=False)

    for stop_signal in (signal.SIGTERM, signal.SIGINT):
        gevent.signal_handler(stop_signal, stop)

    server.ready()
    receiver.join()  # until a stop signal kills it

    taken = server.stop.take_back(places, server.workers)  # those in progress get the grace
    gevent.killall(workers, timeout=1)
    server.stopped(forced=server.workers - taken)


def _receive(server: Server, inbox: SimpleQueue, places: Semaphore) -> None:
    """The receiving greenlet: a free place, a datagram, to the workers; no switch after recv."""
    sock = server.sock
    while True:
        places.acquire()  # a free place first: the datagram below is never held at a switch
        try:
            datagram, address = sock.recvfrom(server.bufsize)  # yields to the others meanwhile
        except gevent.GreenletExit:  # the stop, while this place held no datagram yet
            places.release()
            raise
        except OSError as error:
            places.release()
            log(f"{server.config.model}: recvfrom failed: {error}")
            continue
        inbox.put((datagram, address))  # unbounded: this never blocks


def _work(server: Server, inbox: SimpleQueue, places: Semaphore) -> None:
    """A worker greenlet: while its request waits (``io=``), the others run."""
    while True:
        datagram, address = inbox.get()  # holds nothing while it waits
        try:
            if (reply := server.handle(datagram)) is not None:  # None: no answer (sockperf's)
                server.sock.sendto(reply, address)
        except OSError as error:
            server.unsent(datagram, address, error)
        finally:
            places.release()
