"""BALANCE: spread keep-alive connections over the workers.

Every worker accepts from one shared listening socket, and a worker waiting in ``epoll`` accepts whatever arrives.
With keep-alive that choice lasts: two clients that connect while one worker is idle and the other busy both land
on the idle one, and stay there, so one worker scores every request while the other sits idle (measured: 99
10,000-row requests/s with 2 connections and 2 workers, against 222 for gunicorn's sync worker, which closes each
connection). So the workers publish how many connections each holds on a small board in shared memory, made by
the master before it forks them:

- a worker that holds more connections than the least loaded live worker does not accept for a moment
  (:data:`YIELD_SECONDS`), so that worker takes the next connection; after :data:`MAX_YIELDS` turns in a row it
  accepts anyway (the other may be stuck in a long prediction);
- a worker that holds two or more connections more than the least loaded one answers its next request with
  ``Connection: close``; the client reconnects, and the connection goes where there is room.

Reading the board costs a few loads from shared memory: it is read only when a connection arrives and once per
answered request.
"""

from __future__ import annotations

import mmap
import struct

#: Seconds a worker holding more connections than another stops accepting.
YIELD_SECONDS = 0.02
#: Turns in a row a worker yields before it accepts anyway.
MAX_YIELDS = 5
_SLOT = struct.Struct("i")
_FREE = -1


class ConnectionBoard:
    """Connection counts of the workers, one ``int32`` slot each in anonymous shared memory (inherited by fork);
    a free slot holds -1."""

    def __init__(self, slots: int) -> None:
        self.slots = max(1, slots)
        self.memory = mmap.mmap(-1, self.slots * _SLOT.size)
        self.view = memoryview(self.memory).cast("i")
        for i in range(self.slots):
            self.view[i] = _FREE

    # -- the master -------------------------------------------------------------------------------------------

    def claim(self, used: set[int]) -> int | None:
        """A slot for a worker about to be forked: one no live worker has (``used``), and the slots of workers that
        exited freed; None when all are taken (that worker does not balance)."""
        claimed = None
        for i in range(self.slots):
            if i in used:
                continue
            if claimed is None:
                claimed = i
                self.view[i] = 0
            else:
                self.view[i] = _FREE
        return claimed

    # -- a worker ---------------------------------------------------------------------------------------------

    def publish(self, slot: int, connections: int) -> None:
        self.view[slot] = connections

    def least_other(self, slot: int) -> int | None:
        """The fewest connections any other live worker holds (None: no other worker)."""
        least = None
        view = self.view
        for i in range(self.slots):
            if i != slot:
                count = view[i]
                if count != _FREE and (least is None or count < least):
                    least = count
        return least
