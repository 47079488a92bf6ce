"""Messages to a process's core worker (actor "core"): owners and borrowers talking.

``list_refs``, ``list_tasks``, ``release_mappings`` and ``ping`` carry no payload.
"""

from __future__ import annotations

from typing import NamedTuple

from actorflow._private.protocol.message import message


@message("core", "borrow_objects")
class BorrowObjects(NamedTuple):
    """A borrower holds refs to these objects of ours (a request: the answer means noted)."""

    obj_ids: list[bytes]
    borrower: str


@message("core", "release_objects")
class ReleaseObjects(NamedTuple):
    obj_ids: list[bytes]
    borrower: str


@message("core", "results_held")
class ResultsHeld(NamedTuple):
    """The receiver of a call's results holds the refs inside them: the sender may let go."""

    task_id: bytes


@message("core", "get_object")
class GetObject(NamedTuple):
    """A borrower asks the owner for a value (answered with its wire)."""

    obj_id: bytes


@message("core", "recover_object")
class RecoverObject(NamedTuple):
    """A reader could not get any copy of the object (wire: the one it tried; cause: why):
    answered with a wire that works (another copy, or the value made again), or the error."""

    obj_id: bytes
    wire: list
    cause: str


@message("core", "object_copied")
class ObjectCopied(NamedTuple):
    """Another node's store made a copy of an object we own."""

    obj_id: bytes
    store: str


@message("core", "borrow_actor")
class BorrowActor(NamedTuple):
    actor_id: str
    borrower: str


@message("core", "release_actor")
class ReleaseActor(NamedTuple):
    actor_id: str
    borrower: str


@message("core", "cancel")
class CancelTask(NamedTuple):
    """Cancel a task this process owns (sent by a borrower of one of its results)."""

    task_id: bytes
    force: bool
    recursive: bool


@message("core", "log")
class WorkerOutput(NamedTuple):
    """Lines a worker printed, for its driver to print with their origin."""

    origin: str
    is_stderr: bool
    text: str


@message("core", "progress")
class WorkerProgress(NamedTuple):
    """A distributed progress bar's state (actorflow.experimental.tqdm_ray), for the driver to
    draw: a record of its own, never mixed into the forwarded output lines."""

    origin: str  # where it runs, as output's prefix ("name pid=...")
    state: dict  # {"uuid", "desc", "total", "x", "unit", "closed"}


@message("core", "segments_gone")
class SegmentsGone(NamedTuple):
    """The node's store dropped these segments: close the fds of them it handed us (they keep
    the memory alive)."""

    names: list[str]
