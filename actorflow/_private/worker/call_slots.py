"""How many calls of an async actor (or of one concurrency group) run at once.

A call over the limit is not started until a running one ends, and then one loop turn later,
as in Ray (where the next call is handed to the loop when one ends): coroutines the ended call
woke (an ``Event`` it set, say) run first. With a semaphore that every call's task waits on,
a waiting call may take the freed slot before them, and Ray's "batches of max_concurrency"
guide example deadlocks.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable


class CallSlots:
    def __init__(self, limit: int) -> None:
        self._free = limit
        self._waiting: deque[Callable[[], None]] = deque()

    def run(self, start: Callable[[], None]) -> None:
        """start() now if a slot is free, else once one is; the call it starts must call
        release() when it ends."""
        if self._free > 0 and not self._waiting:
            self._free -= 1
            start()
        else:
            self._waiting.append(start)

    def release(self) -> None:
        if self._waiting:
            asyncio.get_running_loop().call_soon(self._hand_over)
        else:
            self._free += 1

    def _hand_over(self) -> None:
        if self._waiting:
            self._waiting.popleft()()  # the slot passes to it
        else:
            self._free += 1
