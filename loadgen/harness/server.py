"""One handle on a server subprocess: start it, read its events, sample its CPU, stop it.

Every experiment, check and test starts servers through ``ServerProcess``. The server runs in a
session of its own, so Ctrl-C reaches only the parent and the whole group can be ended at once;
the kernel sends it SIGTERM if the parent dies anyway (``stopped_with_us``), so nothing serves on;
two reader threads drain its stdout (JSON events, one per line) and stderr (human logs, kept for
error messages), so a chatty server never blocks on a full pipe.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from servers import MODELS
from servers.work import ECHO, Work, parse

ROOT = Path(__file__).resolve().parents[2]
READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 10.0
STDERR_KEPT = 1 << 20  # the last megabyte of logs is plenty for an error message


class ServerError(RuntimeError):
    """The server did not start, answer with its events, or stop as it should."""


@dataclass(frozen=True)
class Sample:
    """The server's whole process tree at one moment."""

    time: float
    cpu_user_s: float
    cpu_system_s: float
    rss_bytes: int
    peak_rss_bytes: int
    threads: int
    processes: int


def cpu_window(before: Sample, after: Sample) -> dict[str, Any]:
    """The server's CPU between two samples: user and system seconds, and cores used."""
    seconds = after.time - before.time
    user, system = after.cpu_user_s - before.cpu_user_s, after.cpu_system_s - before.cpu_system_s
    return {
        "cpu_user_s": round(user, 4),
        "cpu_system_s": round(system, 4),
        "cores_used": round((user + system) / seconds, 3) if seconds > 0 else None,
    }


def model_args(model: str, work: Work = ECHO, workers: int | None = None) -> list[str]:
    """``python -m servers`` arguments for ``model`` on port 0 doing ``work`` (as done:
    ``cpu=21554it``); ``workers`` goes only to models where it counts workers (a cap on tasks
    in progress keeps the model's own default)."""
    args = [model, "--port", "0", "--work", work.exact_spec]
    if workers is not None and MODELS[model].workers_meaning == "workers":
        args += ["--workers", str(workers)]
    return args


def start_model(
    model: str, work: Work = ECHO, workers: int | None = None, extra: tuple[str, ...] = (),
    **options: Any,
) -> ServerProcess:  # fmt: skip
    """A server for ``model`` on port 0 doing ``work`` (not yet waited for: see wait_ready)."""
    return ServerProcess([*model_args(model, work, workers), *extra], work=work, **options)


def pinned(cores: list[int] | None) -> Callable[[], None] | None:
    """A ``preexec_fn`` that pins a child process to ``cores`` (None: leave it unpinned)."""
    return (lambda: os.sched_setaffinity(0, cores)) if cores else None


# Loaded here, in the parent: a forked child had better not load a library before its exec.
_LIBC = None
if sys.platform.startswith("linux"):
    import ctypes

    _LIBC = ctypes.CDLL(None, use_errno=True)


def stopped_with_us(cores: list[int] | None) -> Callable[[], None]:
    """A ``preexec_fn`` for a server: pinned to ``cores`` (None: unpinned), and sent SIGTERM by
    the kernel if this process dies, however (a SIGTERM, a SIGKILL), so that it stops cleanly
    rather than serve on in a session of its own with nobody to stop it."""
    parent, pin = os.getpid(), pinned(cores)

    def setup() -> None:
        if _LIBC is not None:
            _LIBC.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
            if os.getppid() != parent:  # the parent died before that took effect
                os._exit(1)
        if pin is not None:
            pin()

    return setup


class ServerProcess:
    """``[*wrap, python, "-m", "servers", *args]`` (or ``[*wrap, python, *script]``); ``work``:
    the work it was asked, as the caller tells it (``cpu=2ms``), where the caller knows."""

    def __init__(
        self, args: list[str], *, python: str | None = None, wrap: tuple[str, ...] = (),
        cores: list[int] | None = None, stdin: int | None = subprocess.DEVNULL,
        script: list[str] | None = None, work: Work | None = None,
    ) -> None:  # fmt: skip
        self.args, self.asked = args, work
        self.model = args[0] if args else "server"
        command = [*wrap, python or sys.executable, *(script or ["-m", "servers", *args])]
        self.proc = subprocess.Popen(
            command,
            cwd=ROOT,
            stdin=stdin,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            preexec_fn=stopped_with_us(cores),
        )
        self.ready: dict[str, Any] = {}
        self.stopped: dict[str, Any] | None = None
        self._events: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._stderr = ""
        self._readers = [threading.Thread(target=self._read_stdout, daemon=True),
                         threading.Thread(target=self._read_stderr, daemon=True)]  # fmt: skip
        for reader in self._readers:
            reader.start()
        self._tree: list[psutil.Process] = []
        self._signalled = False

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _read_stdout(self) -> None:
        for line in self.proc.stdout:
            try:
                self._events.put(json.loads(line))
            except ValueError:
                self._events.put({"event": "unreadable", "line": line.decode("utf-8", "replace")})
        self._events.put(None)

    def _read_stderr(self) -> None:
        # chunks, not lines: an interactive prompt has no newline yet
        for chunk in iter(lambda: self.proc.stderr.read1(4096), b""):
            self._stderr = (self._stderr + chunk.decode("utf-8", "replace"))[-STDERR_KEPT:]

    @property
    def stderr(self) -> str:
        return self._stderr

    @property
    def stderr_lines(self) -> list[str]:
        return self._stderr.splitlines(True)

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def address(self) -> tuple[str, int]:
        return self.ready["host"], self.ready["port"]

    @property
    def work(self) -> Work:
        """The work per request as the server does it (``cpu=19190it``: its ready event says),
        told as it was asked (``cpu=2ms``: the caller's words, else the server's own)."""
        if "work_exact" not in self.ready:
            raise ServerError(f"{self.model}: not ready, so its work is not known yet")
        done = parse(self.ready["work_exact"])
        return done.told_as(self.asked or parse(self.ready["work"]))

    def next_event(self, timeout: float = READY_TIMEOUT_S) -> dict[str, Any] | None:
        """The next event, or None once stdout has closed (the server exited)."""
        try:
            return self._events.get(timeout=timeout)
        except queue.Empty:
            raise ServerError(self._explain(f"no event within {timeout} s")) from None

    def _expect(self, name: str, timeout: float) -> dict[str, Any]:
        event = self.next_event(timeout)
        if event is None:
            raise ServerError(self._explain(f"exited before its {name} event"))
        if event.get("event") != name:
            raise ServerError(self._explain(f"expected its {name} event, got {event}"))
        return event

    def _explain(self, what: str) -> str:
        tail = self._stderr.strip().splitlines()[-5:]
        return f"{self.model}: {what}" + "".join(f"\n  {line}" for line in tail)

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> dict[str, Any]:
        self.ready = self._expect("ready", timeout)
        return self.ready

    def tree(self) -> list[psutil.Process]:
        """The server's main process and every descendant, now."""
        main = psutil.Process(self.proc.pid)
        return [main, *main.children(recursive=True)]

    def sample(self) -> Sample:
        """CPU seconds, memory, threads and processes of the whole tree, now (the tree is
        looked up at the first sample: a sample must cost next to nothing)."""
        self._tree = self._tree or self.tree()
        user = system = 0.0
        rss = peak_rss = threads = processes = 0
        for process in self._tree:
            try:
                with process.oneshot():
                    times = process.cpu_times()
                    user, system = user + times.user, system + times.system
                    threads += process.num_threads()
                    rss += process.memory_info().rss
                    peak_rss += _peak_rss(process)
                    processes += 1
            except psutil.NoSuchProcess:
                continue
        return Sample(time.monotonic(), user, system, rss, peak_rss, threads, processes)

    def request_stop(self, sig: int = signal.SIGTERM) -> None:
        """Signal the server once (a second SIGTERM would cut short the stop it started)."""
        if self.proc.poll() is None and not self._signalled:
            self._signalled = True
            self.proc.send_signal(sig)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = STOP_TIMEOUT_S) -> dict[str, Any]:
        """Signal the server; return its stopped event once it has exited with status 0.

        Raises ServerError (after ending the whole group) if it does not; once stopped, another
        call returns the same event."""
        if self.stopped is not None:
            return self.stopped
        self.request_stop(sig)
        try:
            event = self._expect("stopped", timeout)
            status = self.proc.wait(timeout)
        except (ServerError, subprocess.TimeoutExpired) as error:
            self.close()
            raise ServerError(self._explain(f"did not stop cleanly ({error})")) from None
        if status != 0:
            self.close()
            raise ServerError(self._explain(f"exited with status {status} after stopping"))
        self.stopped = event
        return event

    def stop_or_none(self) -> dict[str, Any] | None:
        """``stop()`` for a caller that records a failed stop rather than failing with it."""
        try:
            return self.stop()
        except ServerError as error:
            print(f"warning: {error}", file=sys.stderr, flush=True)
            return None
        finally:
            self.close()

    def close(self) -> None:
        """End whatever is left of the group, then release the pipes (safe to call twice)."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.proc.wait()
        for reader in self._readers:
            reader.join(5)
        for pipe in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()


def _peak_rss(process: psutil.Process) -> int:
    """VmHWM, the kernel's high-water mark of resident memory (Linux); else the current RSS."""
    try:
        with open(f"/proc/{process.pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return int(process.memory_info().rss)
