"""greenlet: what gevent does, by hand: a hub of thirty lines and a greenlet per request.

A greenlet is a function with its own stack: it stops where it calls ``other.switch()`` and goes
on when switched back to. The hub (the main greenlet) waits in select() for the socket or the
first timer, then switches to who waited. The receiving greenlet switches to a new greenlet per
datagram, which runs until its ``io=`` wait (``Hub.sleep``: a timer, a switch to the hub); the
hub switches back to the receiver. ``cpu=`` never switches: CPU requests take turns; ``block=``
stalls them all. gevent adds monkey-patching (unchanged blocking calls switch), libev or libuv,
timeouts, pools, queues, events, DNS on threads, signals; here the stop is the hub's own.
"""

import heapq
import itertools
import os
import selectors
import signal
import time

from greenlet import getcurrent, greenlet

from servers.runtime import Address, Server


class Hub:  # select() for files, a heap of timers, a switch to each greenlet whose turn it is
    def __init__(self) -> None:
        self.greenlet = getcurrent()  # the main greenlet, which runs this loop
        self.selector = selectors.SelectSelector()
        self.timers: list[tuple[float, int, greenlet]] = []  # (deadline, seq, greenlet): a heap
        self.seq = itertools.count()  # equal deadlines: first in, first out

    def wake(self, child: greenlet, at: float = 0.0) -> None:  # 0: before any timer due
        heapq.heappush(self.timers, (at, next(self.seq), child))

    def sleep(self, seconds: float) -> None:  # the others run meanwhile
        self.wake(getcurrent(), time.monotonic() + seconds)
        self.greenlet.switch()

    def wait_readable(self, fileobj: object) -> None:
        self.selector.register(fileobj, selectors.EVENT_READ, getcurrent().switch)
        try:
            self.greenlet.switch()
        finally:
            self.selector.unregister(fileobj)

    def turn(self, most_s: float = 3600.0) -> None:  # wait, then switch to who is due
        if self.timers:
            most_s = min(most_s, self.timers[0][0] - time.monotonic())
        for key, _ in self.selector.select(max(0.0, most_s)):  # µs, unlike epoll's whole ms
            key.data()  # a waiting greenlet's switch, or the signal pipe's read
        now = time.monotonic()
        while self.timers and self.timers[0][0] <= now:
            if not (child := heapq.heappop(self.timers)[2]).dead:  # dead: ended by the stop
                child.switch()


def serve(server: Server) -> None:
    server.count_per_worker(["hub"])  # every greenlet runs on the one main thread
    hub, sock, busy, full = Hub(), server.sock, set(), []  # full: the receiver, at the cap
    wakeup, signalled = os.pipe2(os.O_NONBLOCK)  # not SHUT_RD, which spins here: greenlets.py
    signal.set_wakeup_fd(signalled)  # a signal writes a byte to it: select() returns
    hub.selector.register(wakeup, selectors.EVENT_READ, lambda: os.read(wakeup, 64))
    for stop_signal in (signal.SIGTERM, signal.SIGINT):  # a second one skips the grace period
        signal.signal(stop_signal, lambda *_: server.stop.ask())

    def receive() -> None:  # the receiving greenlet: a greenlet per datagram, up to the cap
        while True:
            while len(busy) >= server.workers:  # busy: the requests' greenlets in progress
                full.append(receiver)  # at the cap: the next request to end wakes it
                hub.greenlet.switch()
            try:
                datagram, address = sock.recvfrom(server.bufsize)
            except BlockingIOError:  # nothing queued: back when the socket is readable
                hub.wait_readable(sock)
                continue
            busy.add(request := greenlet(answer, hub.greenlet))  # its parent: the hub
            hub.wake(receiver)  # back here as soon as the request waits (or ends, to its parent)
            request.switch(datagram, address)  # it starts: answer(datagram, address)

    def answer(datagram: bytes, address: Address) -> None:  # a request's greenlet
        try:
            if (reply := server.handle(datagram, wait=hub.sleep)) is not None:  # None: no answer
                sock.sendto(reply, address)
        except OSError as error:  # a full buffer, a vanished route: counted, serve on
            server.unsent(datagram, address, error)
        finally:
            busy.discard(getcurrent())
            if full:  # the receiver waits for a place: it reads again
                hub.wake(full.pop())

    sock.setblocking(False)
    hub.wake(receiver := greenlet(receive))  # made on the hub: its parent
    server.ready()
    while not server.stop.requested:
        hub.turn()
    receiver.throw()  # GreenletExit where it waits: it holds no datagram there
    while busy and server.stop.grace_left() > 0:  # requests in progress get the grace period
        hub.turn(server.stop.grace_left())
    for request in (forced := list(busy)):  # still waiting: ended
        request.throw()
    server.stopped(len(forced))
