"""The server's ``max_concurrency`` worker slots, shared fairly between clients.

A client is its peer address (every connection from one address is one client: opening more connections gets no
more slots). A request takes a free slot at once. When every slot is taken:

- a client that already holds (or waits for) its *share* — ``max_concurrency`` divided by the clients holding or
  waiting for a slot, at least 1 — gets :class:`Full` at once (429): it cannot take more while others wait;
- any other client waits, at most ``wait_s`` seconds (then :class:`Full`), for the next slot let go; a freed slot
  goes to the waiting client that holds the fewest slots, the longest waiting first.

So a client flooding the server keeps at most its share once somebody else comes, and a client that asks for a
little is served as soon as a slot frees, however many requests the flood sends. One client alone may use every
slot. Every method runs on the event loop's thread: no locks, and a check and its update cannot interleave.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from collections.abc import Hashable

__all__ = ["FairSlots", "Full"]


class Full(Exception):
    """No slot for this client now: the message says why (one line, for the 429)."""


class FairSlots:
    def __init__(self, size: int):
        self.size = size
        self.in_use = 0
        self.held: Counter[Hashable] = Counter()  # client → slots it holds
        self.waiting: list[tuple[int, Hashable, asyncio.Future]] = []  # (arrival, client, its grant), oldest first
        self._arrivals = itertools.count()

    def share(self, client: Hashable) -> int:
        """Slots ``client`` may hold while others wait: ``size`` over the clients holding or waiting, at least 1."""
        clients = {c for c, n in self.held.items() if n > 0} | {c for _, c, _ in self.waiting} | {client}
        return max(1, self.size // len(clients))

    async def acquire(self, client: Hashable, wait_s: float) -> None:
        """Take a slot for ``client`` (see the module docstring); :class:`Full` if it gets none."""
        if self.in_use < self.size:
            self._take(client)
            return
        asked = self.held[client] + sum(1 for _, c, _ in self.waiting if c == client)
        if asked >= self.share(client):
            others = "; others are waiting" if any(c != client for _, c, _ in self.waiting) else ""
            raise Full(f"too many requests in flight (limit {self.size}; this client has {self.held[client]}"
                       f"{others}); try again")  # fmt: skip
        grant = asyncio.get_running_loop().create_future()
        entry = (next(self._arrivals), client, grant)
        self.waiting.append(entry)
        try:
            await asyncio.wait({grant}, timeout=wait_s)
        except asyncio.CancelledError:
            self._leave(entry, client)
            raise
        if not grant.done():
            self._leave(entry, client)
            raise Full(f"every slot stayed busy for {wait_s:g} s (limit {self.size}, --max-concurrency); try again")

    def release(self, client: Hashable) -> None:
        """Let go of a slot of ``client``: it goes to the waiting client holding the fewest, the oldest first."""
        self.in_use -= 1
        self.held[client] -= 1
        if self.held[client] <= 0:
            del self.held[client]
        while self.waiting and self.in_use < self.size:
            entry = min(self.waiting, key=lambda e: (self.held[e[1]], e[0]))
            self.waiting.remove(entry)
            _, waiter, grant = entry
            if grant.done():  # cancelled meanwhile
                continue
            self._take(waiter)
            grant.set_result(None)

    def _take(self, client: Hashable) -> None:
        self.in_use += 1
        self.held[client] += 1

    def _leave(self, entry: tuple[int, Hashable, asyncio.Future], client: Hashable) -> None:
        """A waiter gives up (timed out, or its request was cancelled): out of the queue, or, if it was granted a
        slot a moment before, the slot goes back."""
        _, _, grant = entry
        if grant.done() and not grant.cancelled():
            self.release(client)
        else:
            grant.cancel()
            if entry in self.waiting:
                self.waiting.remove(entry)
