"""The actorflow exception tree (public as ``actorflow.exceptions``).

Every error a user can catch is defined here and is an ``ActorflowError``; ``_private`` code
raises them from here, so it never imports the public layer. Names follow Ray's without the ``Ray``
prefix; Ray's spellings are available as aliases at the bottom of this module so that code written
for Ray keeps working.
"""

from __future__ import annotations

import types
from typing import Any

__all__ = [
    "ActorflowError",
    "TaskError",
    "GetTimeoutError",
    "TaskCancelledError",
    "WorkerCrashedError",
    "ObjectLostError",
    "OwnerDiedError",
    "ObjectReconstructionFailedError",
    "ObjectReconstructionFailedMaxAttemptsExceededError",
    "ObjectReconstructionFailedLineageEvictedError",
    "ObjectStoreFullError",
    "ObjectTooLargeError",
    "ActorError",
    "ActorDiedError",
    "ActorUnavailableError",
    "ActorUnschedulableError",
    "TaskUnschedulableError",
    "NodeDiedError",
    "SerializationError",
    "AuthenticationError",
    "TLSError",
    "RuntimeNotInitializedError",
    "AsyncioContextError",
    "PeerUnreachableError",
    "RemoteError",
    "MalformedMessageError",
    "ClusterNotFoundError",
    "NodeStartError",
    "NoTokenError",
    "ChildStartError",
    "ActorClassInheritanceError",
    "ActorClassInheritanceException",
    "RuntimeEnvSetupError",
    "StateApiError",
    "DAGInputError",
    "ChannelError",
    "ChannelTimeoutError",
    "CgraphCapacityExceededError",
    "PoolFullError",
    "RayError",
    "RayTaskError",
    "RayActorError",
    "RaySystemError",
    "RayStateApiException",
    "RayChannelError",
    "RayChannelTimeoutError",
    "RayCgraphCapacityExceeded",
]


class ActorflowError(Exception):
    """Root of every error raised by actorflow."""


class TaskError(ActorflowError):
    """A remote task or actor method raised; ``cause`` is the original exception.

    ``get`` raises an instance that is also an instance of the cause's class where that class can
    be subclassed, so ``except ValueError`` catches a remote ``ValueError``.
    """

    def __init__(
        self,
        function_name: str,
        traceback_str: str,
        cause: BaseException | None,
        pid: int | None = None,
        ip: str | None = None,
    ) -> None:
        self.function_name = function_name
        self.traceback_str = traceback_str
        self.cause = cause
        self.pid = pid
        self.ip = ip
        super().__init__(function_name, traceback_str, cause, pid, ip)

    def __str__(self) -> str:
        where = f" (pid={self.pid}, ip={self.ip})" if self.pid is not None else ""
        return f"{self.function_name}(){where} failed:\n{self.traceback_str.rstrip()}"

    def __reduce__(self) -> Any:
        return (TaskError, (self.function_name, self.traceback_str, self.cause, self.pid, self.ip))

    def as_instanceof_cause(self) -> TaskError:
        """Return a copy that is an instance of both TaskError and the cause's class."""
        cause = self.cause
        while isinstance(cause, TaskError) and cause.cause is not None:
            cause = cause.cause  # a chain of tasks that failed from the first one's error
        cause_cls = type(cause) if cause is not None else None
        if cause_cls is None or isinstance(self, cause_cls) or issubclass(TaskError, cause_cls):
            return self
        try:
            dual: Any = _dual_class(cause_cls)
            # No __init__ call: the cause's class may want other arguments than ours.
            err = dual.__new__(dual, *cause.args)  # type: ignore[union-attr]
            err.args = cause.args  # type: ignore[union-attr]
            err.__dict__.update(getattr(cause, "__dict__", {}))
            err.function_name, err.traceback_str, err.cause = (
                self.function_name,
                self.traceback_str,
                self.cause,
            )
            err.pid, err.ip = self.pid, self.ip
            return err
        except Exception:  # a class that refuses subclassing or construction: plain TaskError
            return self


_dual_classes: dict[type, type] = {}


def _dual_class(cause_cls: type) -> type:
    cls = _dual_classes.get(cause_cls)
    if cls is None:
        name = f"TaskError({cause_cls.__name__})"

        def __reduce__(self: TaskError) -> Any:  # pickles back as the plain TaskError
            return TaskError.__reduce__(self)

        namespace = {
            "__reduce__": __reduce__,
            "__str__": TaskError.__str__,
            "__module__": PUBLIC_MODULE,
        }
        cls = types.new_class(
            name, (TaskError, cause_cls), exec_body=lambda ns: ns.update(namespace)
        )
        _dual_classes[cause_cls] = cls
    return cls


class GetTimeoutError(ActorflowError, TimeoutError):
    """``get`` or ``wait`` ran out of time."""


class TaskCancelledError(ActorflowError):
    """The task was cancelled with ``actorflow.cancel`` (or its awaiting asyncio task was)."""

    def __init__(self, task_id: str = "", message: str | None = None) -> None:
        self.task_id = task_id
        super().__init__(message or f"task {task_id} was cancelled")

    def __reduce__(self) -> Any:
        return (TaskCancelledError, (self.task_id, str(self)))


class WorkerCrashedError(ActorflowError):
    """The worker process running the task died before the task finished."""


class ObjectLostError(ActorflowError):
    """The object's value can no longer be had (freed, or every copy is gone)."""


class OwnerDiedError(ObjectLostError):
    """The process that owned the object has exited."""


class ObjectReconstructionFailedError(ObjectLostError):
    """Every copy of the object is gone and it cannot be made again; ``reason`` says why (as
    Ray's reasons without the OBJECT_UNRECONSTRUCTABLE_ prefix): ``PUT`` (made by put, which has
    no task to re-run), ``ACTOR_TASK`` (an actor method's result), ``GENERATOR`` (an item of a
    streaming generator), ``BORROWED`` (its owner said so), ``LINEAGE_DISABLED``,
    ``DEPENDENCY`` (an argument of its task could not be had), ``TASK_FAILED``."""

    reason = "UNKNOWN"

    def __init__(self, message: str, reason: str | None = None) -> None:
        if reason is not None:
            self.reason = reason
        super().__init__(message)

    def __reduce__(self) -> Any:
        return (type(self), (str(self), self.reason))


class ObjectReconstructionFailedMaxAttemptsExceededError(ObjectReconstructionFailedError):
    """The task that made the object has no retries left (its ``max_retries``): reason
    ``MAX_ATTEMPTS_EXCEEDED``, or ``RETRIES_DISABLED`` for a task made with max_retries=0."""

    reason = "MAX_ATTEMPTS_EXCEEDED"


class ObjectReconstructionFailedLineageEvictedError(ObjectReconstructionFailedError):
    """The owner no longer keeps the task that made the object: its lineage was evicted to stay
    within ``max_lineage_bytes``."""

    reason = "LINEAGE_EVICTED"


class ObjectTooLargeError(ActorflowError, ValueError):
    """A value is larger than a message may be (the connection's frame limit)."""


class ObjectStoreFullError(ActorflowError):
    """The object store has no room and nothing can be spilled."""


class ActorError(ActorflowError):
    """The actor could not run the call (Ray's RayActorError)."""


class ActorDiedError(ActorError):
    """The actor is dead; ``cause`` says why (killed, process exited, constructor failed, ...)."""

    def __init__(self, message: str = "the actor died", cause: BaseException | None = None):
        self.cause = cause
        super().__init__(message)

    def __reduce__(self) -> Any:
        return (ActorDiedError, (str(self), self.cause))


class ActorUnavailableError(ActorError):
    """The actor is temporarily unreachable (restarting)."""


class ActorUnschedulableError(ActorflowError):
    """No node can ever satisfy the actor's resource request."""


class TaskUnschedulableError(ActorflowError):
    """No node can ever satisfy the task's resource request."""


class NodeDiedError(ActorflowError):
    """A node of the cluster died."""


class SerializationError(ActorflowError, TypeError):
    """A value could not be serialized (names the argument) or deserialized."""


class AuthenticationError(ActorflowError, PermissionError):
    """A peer did not prove it knows the cluster token."""


class RuntimeNotInitializedError(ActorflowError, RuntimeError):
    """An API call needs ``actorflow.init()`` and auto-init is not possible here."""


class AsyncioContextError(ActorflowError, RuntimeError):
    """A blocking call was made on a thread whose event loop is running: ``await`` instead."""


class PeerUnreachableError(ActorflowError, ConnectionError):
    """The peer's mailbox could not be reached, or the connection to it was lost.

    ``delivered`` is False when the message certainly never left this process (the connection
    could not be opened), so it is safe to send it again elsewhere."""

    delivered = True


class RemoteError(ActorflowError):
    """A system handler on another process failed with an error of a type not known here."""


class MalformedMessageError(ActorflowError, ValueError):
    """A message did not have the shape its handler expects (names the message and field)."""


class ClusterNotFoundError(ActorflowError, ConnectionError):
    """No running actorflow cluster could be found or reached."""


class TLSError(AuthenticationError):
    """TLS refused a connection: TLS on one side only, or a certificate not of this cluster,
    expired, or missing (the message says which)."""


class NodeStartError(ActorflowError):
    """A node process could not be started (its log says why)."""


class NoTokenError(AuthenticationError):
    """No token for a cluster was given or found on this machine."""


class RuntimeEnvSetupError(ActorflowError):
    """A task's or actor's runtime_env could not be set up on its node (a pip install that
    failed, a package that could not be fetched, a setup that timed out): the task, or every call
    of the actor, fails with it."""


class ChildStartError(ActorflowError):
    """A supervised child did not start (its constructor raised, or it took longer than
    start_timeout)."""

    def __init__(self, child: str, cause: str) -> None:
        super().__init__(f"child {child!r} did not start: {cause}")
        self.child, self.cause = child, cause

    def __reduce__(self) -> Any:
        return (ChildStartError, (self.child, self.cause))


class ActorClassInheritanceError(ActorflowError, TypeError):
    """A class tried to inherit from an actor class (make the base a plain class instead)."""


class StateApiError(ActorflowError):
    """A state API query (``actorflow.util.state``) could not be answered in full: a node did
    not answer, or the query was malformed beyond a plain ValueError."""


class DAGInputError(ActorflowError, AssertionError):
    """A DAG's InputNode is misused: outside its ``with`` block, indexed with something else
    than an int or a str, or two of them in one DAG (an AssertionError, as Ray raises)."""


class ChannelError(ActorflowError):
    """A compiled graph's channel cannot carry the execution: the graph was torn down, or one
    of its actors died (Ray's RayChannelError)."""


class ChannelTimeoutError(ChannelError, GetTimeoutError):
    """A compiled graph's result did not arrive in time (``get(ref, timeout=...)``); the
    execution is still running and its result can be read later."""


class CgraphCapacityExceededError(ActorflowError):
    """A compiled graph has as many executions in flight as it allows (its
    ``_max_inflight_executions``): get a result before executing it again."""


class PoolFullError(ActorflowError):
    """A PoolActor's queue is full: submit(block=False) found no room, or none freed up within
    its timeout."""


# Ray's spellings, so that code written for Ray keeps working.
ActorClassInheritanceException = ActorClassInheritanceError
RayError = ActorflowError
RayTaskError = TaskError
RayActorError = ActorError
RaySystemError = ActorflowError
RayStateApiException = StateApiError
RayChannelError = ChannelError
RayChannelTimeoutError = ChannelTimeoutError
RayCgraphCapacityExceeded = CgraphCapacityExceededError

# Tracebacks and pickles name the public module (pickles of errors load from there).
PUBLIC_MODULE = "actorflow.exceptions"
for _name in __all__:
    globals()[_name].__module__ = PUBLIC_MODULE
del _name
