"""Ids. An object id is the id of the task that makes it plus a 4-byte return index, as in Ray,
so the task behind any ref is known without a lookup."""

from __future__ import annotations

import os

TASK_ID_BYTES = 16
OBJECT_ID_BYTES = TASK_ID_BYTES + 4


def new_id(nbytes: int = 16) -> bytes:
    return os.urandom(nbytes)


def new_task_id() -> bytes:
    return os.urandom(TASK_ID_BYTES)


def object_id(task_id: bytes, index: int) -> bytes:
    return task_id + index.to_bytes(4, "big")


def task_id_of(obj_id: bytes) -> bytes:
    return obj_id[:TASK_ID_BYTES]


def index_of(obj_id: bytes) -> int:
    return int.from_bytes(obj_id[TASK_ID_BYTES:], "big")


def hex_id(raw: bytes) -> str:
    return raw.hex()
