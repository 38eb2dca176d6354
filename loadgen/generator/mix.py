"""Mixed traffic: requests of several classes in given shares, ``--mix "echo:95,cpu=20ms:5"``.

A class is a workload as ``--work`` spells it, then ``:`` and its share (shares are weights:
95 and 5, or 0.95 and 0.05). A workload with several terms keeps its commas:
``echo:90,cpu=1ms,io=5ms:10`` is two classes, since a class ends where a share is given.

Each request carries its class's work (``servers.protocol``: ``@SPEC TEXT``, for a server
started with ``--work-from-request``); the echo class sends plain text. A CPU class is sent as
an iteration count once calibrated (``Mix.calibrated``), so every server does the same work,
and as asked (``cpu=20ms``: the server converts it at its own speed) before.

Which class a request belongs to is dealt from a deck (``Mix.deck``): the classes in their
exact shares over ``DECK_SIZE`` cards, shuffled with the run's seed, dealt in turn by each
generator process. So the shares hold exactly over every deck, and a seed gives the same run.
Dealt by client instead (``Deal``), each client gets one class for all its requests
(``Mix.clients``: the classes in their shares over the clients): a slow client among fast
ones, which is what a server that picks its worker by the client's address tells apart.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from servers.protocol import WORK_MARK
from servers.work import Work, parse

DECK_SIZE = 1000
Deal = Literal["request", "client"]  # a class per request, or one per client for all its own
_SHARE = re.compile(r"^(.*):(\d+(?:\.\d+)?)$")


@dataclass(frozen=True)
class MixClass:
    """One class of requests: its work (as sent) and its share of the requests (0 to 1)."""

    work: Work
    share: float

    @property
    def name(self) -> str:
        """The class as asked: ``cpu=20ms``, ``echo``."""
        return self.work.spec

    @property
    def mark(self) -> bytes:
        """What a request of this class starts with: nothing for echo, ``@SPEC `` else."""
        if self.work.kind == "echo":
            return b""
        spec = self.work.exact_spec if self.work.calibrated else self.work.spec
        return f"{WORK_MARK}{spec} ".encode("ascii")


@dataclass(frozen=True)
class Mix:
    """Classes of requests and their shares; ``spec`` is how ``--mix`` spells it."""

    classes: tuple[MixClass, ...]

    @property
    def spec(self) -> str:
        return ",".join(f"{c.name}:{c.share * 100:g}" for c in self.classes)

    @property
    def mark_size(self) -> int:
        """The longest mark: how much larger than the payload a request can be."""
        return max(len(c.mark) for c in self.classes)

    def deck(self, seed: int, size: int = DECK_SIZE) -> list[int]:
        """``size`` class indices in their shares (largest remainders), shuffled."""
        exact = [c.share * size for c in self.classes]
        cards = [int(x) for x in exact]
        by_remainder = sorted(range(len(exact)), key=lambda i: cards[i] - exact[i])
        for i in by_remainder[: size - sum(cards)]:
            cards[i] += 1
        deck = [i for i, count in enumerate(cards) for _ in range(count)]
        random.Random(seed).shuffle(deck)
        return deck

    def clients(self, seed: int, clients: int) -> list[int]:
        """Dealt by client: client ``i``'s class is item ``i`` (each class one client at least,
        so a 5% class among 16 clients is one client: its share of the requests is then 1/16)."""
        deck = self.deck(seed, clients)
        for kind in range(len(self.classes)):  # a class too small to get a card takes one
            if kind not in deck:
                most = max(set(deck), key=deck.count)
                deck[deck.index(most)] = kind
        return deck

    def calibrated(self, calibrate: Callable[[Work], Work]) -> Mix:
        """The same mix with each class's work as ``calibrate`` makes it (iterations)."""
        return Mix(tuple(MixClass(calibrate(c.work), c.share) for c in self.classes))

    def to_json(self) -> str:
        return self.spec

    @classmethod
    def from_json(cls, value: object) -> Mix:
        if not isinstance(value, str):
            raise ValueError(f"a mix is a string, not {type(value).__name__}")
        return parse_mix(value)


def parse_mix(text: str) -> Mix:
    """``echo:95,cpu=20ms:5`` read; ValueError with a message fit for a usage error."""
    classes: list[tuple[Work, float]] = []
    pending: list[str] = []  # terms of a workload whose share is still to come
    for term in text.split(","):
        pending.append(term.strip())
        if match := _SHARE.match(pending[-1]):
            pending[-1] = match.group(1)
            spec = ",".join(pending)
            try:
                work = parse(spec)
            except ValueError as error:
                raise ValueError(f"--mix class {spec!r}: {error}") from None
            classes.append((work, float(match.group(2))))
            pending = []
    if pending:
        raise ValueError(f"--mix: {','.join(pending)!r} has no share: write it as WORK:SHARE")
    if len(classes) < 2:
        raise ValueError("--mix needs two classes at least, e.g. echo:95,cpu=20ms:5")
    if len({work for work, _ in classes}) < len(classes):
        raise ValueError("--mix names one workload twice")
    total = sum(share for _, share in classes)
    if any(share <= 0 for _, share in classes):
        raise ValueError("--mix shares must be positive")
    return Mix(tuple(MixClass(work, share / total) for work, share in classes))
