"""Worker side of actors: the ``actor`` runtime actor that turns a leased worker into a user actor.

The GCS sends ``become_actor`` once (the constructor runs on the main thread); callers then send
``call`` straight here. How a call runs depends on the kind of actor:

- default: one call at a time, in arrival order, on the main thread;
- async (any ``async def`` method): every method on the user loop (user_loop.py), at most
  ``max_concurrency`` at once;
- threaded (sync, ``max_concurrency > 1``): a thread pool of that size.

``concurrency_groups`` give named methods their own limit (a semaphore or a thread pool each).
"""

from __future__ import annotations

import asyncio
import atexit
import functools
import inspect
import logging
import os
import pickle
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from actorflow._private import errors, serialization
from actorflow._private.protocol.actors import ActorExited
from actorflow._private.protocol.message import decode
from actorflow._private.protocol.worker import (
    FAILED,
    BecomeActor,
    CallMethod,
    CancelCall,
    CancelRunningTask,
)
from actorflow._private.runtime import Call
from actorflow._private.scheduling_strategies import is_group_wire
from actorflow._private.worker.actor_handle import CALL_METHOD, READY_METHOD, TERMINATE_METHODS
from actorflow._private.worker.call_slots import CallSlots
from actorflow._private.worker.core_worker import CoreWorker
from actorflow._private.worker.executor import (
    ActorExitSignal,
    TaskExecutor,
    set_visible_gpus,
    task_error,
)

logger = logging.getLogger("actorflow.actor")


class ActorHost:
    def __init__(self, core: CoreWorker, executor: TaskExecutor) -> None:
        self.core = core
        self.runtime = core.runtime
        self.executor = executor
        self.instance: Any = None
        self._methods: dict[str, Any] = {}  # method name -> bound method (_method)
        self.actor_id = ""
        self.gcs_address = ""
        self.class_name = ""
        self.is_async = False
        self.threaded = False
        self._limiters: dict[str, CallSlots] = {}
        self._pools: dict[str, ThreadPoolExecutor] = {}
        self._method_groups: dict[str, str] = {}
        self._exiting = False
        executor.on_actor_exit = self.exit
        # The loop an async actor's methods run on, for library actors whose sync constructor
        # starts coroutines that its methods then share (the Supervisor).
        core.extensions["actor_loop"] = lambda: executor.user_loop.get().loop

    # -- creation -------------------------------------------------------------------------------

    def handle_become_actor(self, payload: list, call: Call) -> asyncio.Future:
        actor_id, spec, restarts, gcs_address, gpu_ids = decode(BecomeActor, payload)
        if self.instance is not None or self.actor_id:
            raise RuntimeError(f"this worker already hosts actor {self.actor_id}")
        if gpu_ids is not None:  # the GPUs leased for it, for the whole life of this process
            set_visible_gpus(gpu_ids)
        self.actor_id, self.gcs_address = actor_id, gcs_address
        self.class_name = spec["class_name"]
        self.core.extensions["actor_id"] = actor_id
        self.core.extensions["actor_restarts"] = restarts
        self.core.extensions["actor_meta"] = spec["meta"]  # for get_runtime_context().current_actor
        self.core.extensions["actor_name"] = spec.get("name") or ""
        self.core.extensions["assigned_resources"] = dict(spec.get("resources") or {})
        if is_group_wire(spec.get("strategy")):  # its placement group, for all its calls
            self.core.extensions["placement_group"] = spec["strategy"]
        future = self.runtime.loop.create_future()
        try:
            cls = pickle.loads(spec["class_blob"])
        except Exception as exc:
            future.set_result(
                (FAILED, task_error(f"{self.class_name}.__init__", exc), 0.0, [], 0.0)
            )
            return future
        self._configure(cls, spec)
        for _position, wire in spec["slots"]:
            if serialization.is_error(wire):  # an argument failed: so does the constructor
                future.set_result((FAILED, wire, 0.0, [], 0.0))
                return future

        construct: Any
        if inspect.iscoroutinefunction(cls.__init__):
            # async def __init__ (as Ray): awaited on the actor's loop.

            async def construct(*args: Any, **kwargs: Any) -> None:
                instance = cls.__new__(cls)
                await instance.__init__(*args, **kwargs)
                self.instance = instance
        else:

            def construct(*args: Any, **kwargs: Any) -> None:
                self.instance = cls(*args, **kwargs)

        job = self.executor.make_job(
            actor_id.encode()[:16],
            construct,
            f"{self.class_name}.__init__",
            spec["args_wire"],
            spec["slots"],
            0,
            call,
        )
        if inspect.iscoroutinefunction(construct):
            self.executor.start_async(job)
        else:
            self.executor.enqueue_main(job)
        return job.future

    def _configure(self, cls: type, spec: dict[str, Any]) -> None:
        self.is_async = spec["meta"]["is_async"]
        self.core.extensions["async_actor"] = self.is_async  # (see actor_loop)
        max_concurrency = spec.get("max_concurrency") or (1000 if self.is_async else 1)
        self.threaded = not self.is_async and max_concurrency > 1
        groups = dict(spec.get("concurrency_groups") or {})
        groups["_default"] = max_concurrency
        for name, method_info in spec["meta"]["methods"].items():
            group = method_info.get("concurrency_group")
            if group:
                if group not in groups:
                    raise ValueError(
                        f"method {name} names concurrency group {group!r}, which "
                        f"is not among the actor's concurrency_groups"
                    )
                self._method_groups[name] = group
        for group, limit in groups.items():
            if self.is_async:
                self._limiters[group] = CallSlots(limit)
            elif self.threaded or group != "_default":
                self._pools[group] = ThreadPoolExecutor(
                    max_workers=limit, thread_name_prefix=f"actor-{group}"
                )

    # -- calls ----------------------------------------------------------------------------------

    def handle_call(self, payload: list, call: Call) -> asyncio.Future:
        task_id, method_name, args_wire, slots, num_returns, caller = decode(CallMethod, payload)
        if method_name in TERMINATE_METHODS:
            fn: Any = _terminate
        elif method_name == READY_METHOD:
            fn = _ready
        elif method_name == CALL_METHOD and self.instance is not None:
            fn = functools.partial(_ray_call, self.instance)
        else:
            fn = self._methods.get(method_name) or self._method(method_name)
        if fn is None or self._exiting:
            future = self.runtime.loop.create_future()
            if self._exiting:
                wire = serialization.serialize_error(errors.ActorDiedError("the actor is exiting"))
            else:
                wire = task_error(
                    f"{self.class_name}.{method_name}",
                    AttributeError(f"actor {self.class_name} has no method {method_name!r}"),
                )
            future.set_result((FAILED, wire, 0.0, [], 0.0))
            return future
        job = self.executor.make_job(
            task_id,
            fn,
            f"{self.class_name}.{method_name}",
            args_wire,
            slots,
            num_returns,
            call,
            owner=caller,
        )
        group = self._method_groups.get(method_name, "_default")
        if self.is_async and fn is not _terminate:
            # Every method of an async actor runs on its loop, plain ones too (as in Ray), so
            # they can touch the actor's asyncio objects safely.
            self.executor.start_async(job, self._limiters.get(group))
        elif group in self._pools:
            self.executor.run_in_pool(job, self._pools[group])
        else:
            self.executor.enqueue_main(job)
        return job.future

    def _method(self, name: str) -> Any:
        """The instance's method name, looked up on its class first (as Ray): an instance
        attribute of the same name (``self.ready = True`` beside ``def ready``) does not hide
        the method from callers. None if there is no such method."""
        instance = self.instance
        if instance is None:
            return None
        raw = inspect.getattr_static(type(instance), name, None)
        if raw is not None and hasattr(raw, "__get__"):
            fn = raw.__get__(instance, type(instance))
            if callable(fn):
                self._methods[name] = fn
                return fn
        fn = getattr(instance, name, None)  # made by __getattr__ or set on the instance
        return fn if callable(fn) else None

    def handle_cancel(self, payload: list, call: Call | None) -> None:
        task_id, force = decode(CancelCall, payload)
        self.executor.handle_cancel_task(CancelRunningTask(task_id, force, True), call)

    # -- exit -----------------------------------------------------------------------------------

    def exit(self, reason: str) -> None:
        """Tell the GCS the actor ended on purpose (no restart), then end the process once the
        replies already queued have left."""
        if self._exiting:
            return
        self._exiting = True
        # Resent while the GCS is restarting: a lost message would make this look like a crash.
        future = self.core.gcs_request("actors", "actor_exited", ActorExited(self.actor_id, reason))
        future.add_done_callback(lambda _: self.runtime.loop.call_later(0.05, self._end_process))

    def _end_process(self) -> None:
        """The user's atexit handlers run (as in Ray, an actor that exits on purpose runs them),
        on a thread of their own so that one that blocks cannot keep the process alive."""
        handlers = threading.Thread(target=atexit._run_exitfuncs, name="atexit", daemon=True)
        handlers.start()
        handlers.join(self.core.config.actor_exit_handlers_seconds)
        os._exit(0)


def _ready() -> bool:
    return True


def _ray_call(instance: Any, fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Ray's ``__ray_call__``: fn run with the actor's instance (a coroutine is awaited)."""
    return fn(instance, *args, **kwargs)


def _terminate() -> None:
    raise ActorExitSignal("the actor was terminated gracefully (__ray_terminate__)")


def is_async_class(cls: type) -> bool:
    return any(
        inspect.iscoroutinefunction(m) or inspect.isasyncgenfunction(m)
        for _, m in inspect.getmembers(cls, predicate=inspect.isfunction)
    )
