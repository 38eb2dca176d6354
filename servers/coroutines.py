"""asyncio and uvloop: one thread, one event loop, a task per datagram, at most N at once.

Each datagram read starts a task that handles it and sends the reply. ``io=5ms`` is ``await
asyncio.sleep``: the task gives the loop back, so thousands of waits overlap in one thread, as
with gevent but with every switch an ``await``. Anything else stops the loop: ``cpu=2ms`` runs
one task at a time, a blocking call (``block=5ms``) stalls every request. uvloop: on libuv.
At most N (``--workers``) in progress: at N the loop stops watching the socket (add_reader:
uvloop's datagram transport cannot pause reading). Tasks are eager (3.12+); asyncio's loop
waits in select(): epoll_wait (and libuv) take whole ms, so a 5 ms sleep wakes up to 1 ms
late (docs/measurements.md, lesson 8). Not named asyncio.py, which it would shadow.
"""

from __future__ import annotations

import asyncio
import selectors
import signal
from collections.abc import Callable

from servers.runtime import Address, Server, log


def serve(server: Server) -> None:
    _run(server, lambda: asyncio.SelectorEventLoop(selectors.SelectSelector()))


def serve_uvloop(server: Server) -> None:
    import uvloop  # only here: where it is missing, the asyncio model still runs

    _run(server, uvloop.new_event_loop)


def _run(server: Server, loop_factory: Callable[[], asyncio.AbstractEventLoop]) -> None:
    server.count_per_worker(["loop"])  # every task runs on the one loop thread
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        forced = runner.run(_serve(server))
    for stop_signal in (signal.SIGTERM, signal.SIGINT):  # the loop's handlers left with it
        signal.signal(stop_signal, lambda *_: server.stop.ask())
    server.stopped(forced)  # the loop is closed: every task has ended


def _eager_task(loop: asyncio.AbstractEventLoop, coro, **options) -> asyncio.Task:
    """Not asyncio.eager_task_factory: it refuses the ``eager_start`` uvloop passes it."""
    return asyncio.Task(coro, loop=loop, **{**options, "eager_start": True})


async def _serve(server: Server) -> int:  # until a stop: the requests the grace period cut
    loop, sock = asyncio.get_running_loop(), server.sock
    if hasattr(asyncio, "eager_task_factory"):  # 3.12+
        loop.set_task_factory(_eager_task)
    sock.setblocking(False)
    tasks: set[asyncio.Task] = set()  # strong references: the loop holds tasks weakly
    stop = asyncio.Event()

    def receive() -> None:  # the socket is readable: read what is queued, up to N in progress
        while len(tasks) < server.workers and not stop.is_set():
            try:
                datagram, address = sock.recvfrom(server.bufsize)
            except OSError as error:  # EAGAIN: the queue is empty; wait for the next readable
                if not isinstance(error, BlockingIOError | InterruptedError):
                    log(f"{server.config.model}: recvfrom failed: {error}")
                return
            task = loop.create_task(answer(datagram, address))
            if not task.done():  # an eager task can be over before create_task returns
                tasks.add(task)
        loop.remove_reader(sock)  # N in progress (or stopping): the rest waits in the kernel

    async def answer(datagram: bytes, address: Address) -> None:  # a task per datagram
        try:
            reply = await server.handle_async(datagram)  # the loop runs others while it awaits
            try:
                if reply is not None:  # None: a message that asks no answer (sockperf's)
                    sock.sendto(reply, address)
            except OSError as error:  # a full buffer, a vanished route: counted, serve on
                server.unsent(datagram, address, error)
        except Exception as error:  # count it, keep serving (a cancel is not an Exception)
            server.counters.record_failure(0)
            log(f"{server.config.model}: request failed: {error!r}")
        finally:
            tasks.discard(asyncio.current_task())
            if len(tasks) == server.workers - 1 and not stop.is_set():
                loop.add_reader(sock, receive)  # it was full, so not reading: read on

    for stop_signal in (signal.SIGTERM, signal.SIGINT):  # run by the loop, between callbacks
        loop.add_signal_handler(stop_signal, lambda: (server.stop.ask(), stop.set()))
    if server.stop.requested:  # a signal came before the loop could take it
        stop.set()

    server.ready()
    loop.add_reader(sock, receive)
    await stop.wait()

    loop.remove_reader(sock)  # stop reading; requests in progress get the grace period
    while tasks and server.stop.grace_left() > 0:
        await asyncio.wait(tasks, timeout=server.stop.poll_s())
    forced = list(tasks)  # still waiting when the grace period ends
    for task in forced:
        task.cancel()
    await asyncio.gather(*forced, return_exceptions=True)
    return len(forced)
