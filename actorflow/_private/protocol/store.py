"""Messages to a node's object store (actor "store"): writers, readers, owners, other stores.

``stats`` and ``list_objects`` carry no payload.
"""

from __future__ import annotations

from typing import NamedTuple

from actorflow._private.protocol.message import message


@message("store", "create")
class Create(NamedTuple):
    """Room for a value: answered [segment name, capacity, fresh] for the writer to fill (its
    fd comes from the store's segment socket, node/segment_socket.py),
    or ["exists", wire] when the object is stored already (a retried task's result)."""

    obj_id: bytes
    nbytes: int
    owner: str
    writer: str


@message("store", "seal")
class Seal(NamedTuple):
    """The writer filled the object: readers may map it."""

    obj_id: bytes
    wire: list


@message("store", "abort")
class Abort(NamedTuple):
    obj_id: bytes


@message("store", "adopt")
class Adopt(NamedTuple):
    """A segment a writer made itself, its fd handed to the store's segment socket first."""

    obj_id: bytes
    nbytes: int
    owner: str
    name: str
    wire: list


@message("store", "pull")
class Pull(NamedTuple):
    """Copy another node's object into this store: answered with the local copy's wire."""

    wire: list  # the SHARED wire naming the object on its node
    source: str  # that node's store address


@message("store", "locate")
class Locate(NamedTuple):
    """Does this store hold the object? Answered with its local wire, or None."""

    obj_id: bytes


@message("store", "transfer_begin")
class TransferBegin(NamedTuple):
    """From the store pulling it: answered [owner, size]; the object is pinned meanwhile."""

    obj_id: bytes
    puller: str


@message("store", "read_chunk")
class ReadChunk(NamedTuple):
    obj_id: bytes
    puller: str
    offset: int
    length: int


@message("store", "transfer_end")
class TransferEnd(NamedTuple):
    obj_id: bytes
    puller: str


@message("store", "opened")
class Opened(NamedTuple):
    """A reader mapped the object (a request, so the reader knows the store knows)."""

    obj_id: bytes
    reader: str


@message("store", "closed")
class Closed(NamedTuple):
    obj_id: bytes
    reader: str


@message("store", "free")
class Free(NamedTuple):
    """These objects are nobody's now (unknown ids are ignored)."""

    obj_ids: list
