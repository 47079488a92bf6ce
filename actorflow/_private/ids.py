"""Ids. An object id is the id of the task that makes it plus a 4-byte return index, as in Ray,
so the task behind any ref is known without a lookup."""

from __future__ import annotations

import itertools
import os

TASK_ID_BYTES = 16
OBJECT_ID_BYTES = TASK_ID_BYTES + 4


def new_id(nbytes: int = 16) -> bytes:
    return os.urandom(nbytes)


# Task ids: a random prefix per process and a counter. os.urandom per id cost ~6 us of a
# batched task (it releases the GIL each time); uniqueness needs no randomness per id.
_prefix = b""
_counter = itertools.count()


def _new_process() -> None:
    global _prefix, _counter
    _prefix, _counter = os.urandom(TASK_ID_BYTES - 6), itertools.count()


_new_process()
os.register_at_fork(after_in_child=_new_process)  # forked workers must not share the prefix


def new_task_id() -> bytes:
    return _prefix + next(_counter).to_bytes(6, "big")


def object_id(task_id: bytes, index: int) -> bytes:
    return task_id + index.to_bytes(4, "big")


def task_id_of(obj_id: bytes) -> bytes:
    return obj_id[:TASK_ID_BYTES]


def index_of(obj_id: bytes) -> int:
    return int.from_bytes(obj_id[TASK_ID_BYTES:], "big")


def hex_id(raw: bytes) -> str:
    return raw.hex()
