"""Worker side of tasks: the ``worker`` actor that runs what owners push to it.

Synchronous functions run one at a time on the process's main thread, so that a cancel can
interrupt them with a signal even inside ``time.sleep``; ``async def`` functions and async
generators (and every method of an async actor) run on the user loop (user_loop.py), not on the
runtime loop, so that a blocking get in them can wait. The reply to ``push_task`` is
``protocol.worker.Reply`` (with the wall-clock time the call began running, for its owner's
task events); generators stream ``[index, value]`` items before it.
"""

from __future__ import annotations

import asyncio
import ctypes
import inspect
import logging
import os
import pickle
import queue
import signal
import socket
import sys
import threading
import time
import traceback
from typing import Any

import cloudpickle

from actorflow._private import errors, ids, serialization
from actorflow._private.protocol.message import decode
from actorflow._private.protocol.worker import (
    CANCELLED,
    DRAINING,
    FAILED,
    OK,
    RESCHEDULE,
    CancelRunningTask,
    DrainWorker,
    PushTask,
    Reply,
    StreamItem,
)
from actorflow._private.runtime import Call
from actorflow._private.worker.call_slots import CallSlots
from actorflow._private.worker.calls import STREAMING
from actorflow._private.worker.core_worker import CoreWorker
from actorflow._private.worker.task_context import (
    current_caller,
    current_placement_group_wire,
    current_task_id,
    current_task_name,
)
from actorflow._private.worker.user_loop import LazyUserLoop

logger = logging.getLogger("actorflow.executor")


class TaskCancelledSignal(BaseException):
    """Raised inside a running task to cancel it; BaseException so `except Exception` in user
    code does not swallow it."""


class ActorExitSignal(BaseException):
    """Raised by exit_actor() inside an actor method: the actor ends after this call."""


class _Job:
    __slots__ = (
        "task_id",
        "fn",
        "fn_name",
        "args_wire",
        "slots",
        "num_returns",
        "call",
        "future",
        "cancelled",
        "async_task",
        "on_user_loop",
        "thread_id",
        "movable",
        "owner",
        "opened",
        "pulling",
        "pulled",
        "placement_group",
        "started",
    )

    def __init__(
        self,
        task_id: bytes,
        fn: Any,
        fn_name: str,
        args_wire: list,
        slots: list,
        num_returns: int,
        call: Call,
        future: asyncio.Future,
        owner: str = "",
    ) -> None:
        self.task_id = task_id
        self.fn = fn
        self.fn_name = fn_name
        self.args_wire = args_wire
        self.slots = slots
        self.num_returns = num_returns
        self.call = call
        self.future = future
        self.cancelled = False
        self.async_task: asyncio.Task | None = None  # its task on the user loop, once started
        self.on_user_loop = False  # an async job, handed to the user loop
        self.thread_id: int | None = None
        self.movable = False  # a task (not an actor call) may be given back to run elsewhere
        self.owner = owner  # the caller: owner of the results
        self.opened: list[bytes] = []  # objects in shared memory its arguments were read from
        self.pulling: asyncio.Future | None = None  # arguments on other nodes being pulled here
        self.pulled: dict[bytes, list] = {}  # their local wires, once pulled
        self.placement_group: list | None = None  # the group the task was placed in
        self.started = 0.0  # wall-clock time it began running, told to the owner (task events)


def start_pulls(core: CoreWorker, job: _Job) -> None:
    """Start pulling the arguments that are on other nodes into this node's store, as soon as
    the job arrives (loop thread): a sync job waits for them when it decodes its arguments, an
    async one awaits job.pulling first."""
    shared = serialization.SHARED
    remote = [
        w
        for w in [job.args_wire, *(wire for _position, wire in job.slots)]
        if w[0] == shared and w[1] != core.node_id
    ]
    if not remote:
        return

    async def pull(wire: list) -> None:
        job.pulled[wire[3]] = await core.shared.localize(wire, job.owner)  # owner: ask if lost

    job.pulling = asyncio.gather(*(pull(w) for w in remote))
    job.pulling.add_done_callback(_retrieve)


def _retrieve(future: asyncio.Future) -> None:
    if not future.cancelled():
        future.exception()  # raised where the job decodes its arguments


def decode_args(core: CoreWorker, job: _Job) -> tuple[list, dict]:
    args, kwargs = _load(core, job.args_wire, job)
    args, kwargs = list(args), dict(kwargs)  # plain args are the wire's own lists: keep it intact
    for position, wire in job.slots:
        value = _load(core, wire, job)
        if isinstance(position, int):
            args[position] = value
        else:
            kwargs[position] = value
    return args, kwargs


def _load(core: CoreWorker, wire: list, job: _Job) -> Any:
    if wire[0] == serialization.SHARED:  # held for the job: released when it ends
        value = core.shared.load(job.pulled.get(wire[3], wire), job=True, owner=job.owner)
        job.opened.append(wire[3])
        return value
    return serialization.deserialize(wire)


def set_visible_gpus(gpu_ids: list[int] | None) -> None:
    """Show the work the GPUs its lease holds (None: the node has no GPUs; leave it alone)."""
    if gpu_ids is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(str(i) for i in gpu_ids)


def task_error(fn_name: str, exc: BaseException) -> list:
    """The wire form of the TaskError for exc. If exc cannot travel (it cannot be pickled, or
    not rebuilt from its pickle), the TaskError carries only its traceback (cause None)."""
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    err = errors.TaskError(fn_name, tb, exc, os.getpid(), _host_ip())
    try:
        data = cloudpickle.dumps(err, protocol=5)
        pickle.loads(data)  # an exception whose __init__ wants other arguments fails here
        return [serialization.ERROR, data]
    except Exception:
        bare = errors.TaskError(fn_name, tb, None, os.getpid(), _host_ip())
        return serialization.serialize_error(bare)


def _host_ip() -> str:
    try:
        return socket.gethostbyname(socket.gethostname())
    except OSError:
        return "127.0.0.1"


def serialize_returns(
    core: CoreWorker, value: Any, num_returns: int, fn_name: str, job: _Job, first_index: int = 1
) -> tuple[list, list]:
    """The wires of the return values (large ones written to the object store), and the
    handles and refs found inside them (see CoreWorker.contained_in): the caller takes those
    at once, and this process keeps its own until it has."""
    if num_returns == 1:
        values = [value]
    elif num_returns == 0:
        values = []
    else:
        if not isinstance(value, (list, tuple)) or len(value) != num_returns:
            got = len(value) if isinstance(value, (list, tuple)) else "1"
            raise ValueError(
                f"{fn_name}() has num_returns={num_returns} but returned {got} "
                f"value(s); return a tuple or list of exactly {num_returns}"
            )
        values = list(value)
    wires: list = []
    contained: list = []
    try:
        for index, item in enumerate(values, start=first_index):
            wire, nested = serialization.serialize_named(
                item, f"the return value of {fn_name}()", views=True
            )
            wires.append(
                core.shared.finish(ids.object_id(job.task_id, index), wire, job.owner or None)
            )
            if nested:
                core._note_escaped(nested)
                contained += core.contained_in(nested)
                core.keep_in_flight(job.task_id, nested)
    except BaseException:
        # The caller gets only the error: values already in the store are nobody's now.
        core.free_in_store([w[3] for w in wires if w[0] == serialization.SHARED])
        raise
    return wires, contained


class TaskExecutor:
    def __init__(self, core: CoreWorker) -> None:
        self.core = core
        self.runtime = core.runtime
        self._functions: dict[bytes, Any] = {}
        self._main_queue: queue.SimpleQueue = queue.SimpleQueue()
        # Jobs waiting for a thread. A job bounced back to its owner may be pushed here again
        # under the same task id while its old entry is still in _main_queue: a thread runs
        # a job only if it is still the one queued under its id (see _take).
        self._queued: dict[bytes, _Job] = {}
        self._queued_lock = threading.Lock()
        self._running: dict[bytes, _Job] = {}
        self._main_thread_id = threading.main_thread().ident or 0
        self.on_actor_exit: Any = None  # set by the actor host
        self.exit_reason: str | None = None  # once set, calls are refused, not run
        # The task on the main thread is blocked in get/wait (set by worker.main's hooks).
        self.task_blocked = False
        # Set when the node drains: new tasks go back to their owners (RESCHEDULE, DRAINING).
        self.draining = ""
        self._task_futures: set[asyncio.Future] = set()  # the tasks not answered yet
        self.user_loop = LazyUserLoop(self.runtime.loop)  # where async jobs run

    # -- receiving tasks (loop thread) ----------------------------------------------------------

    def function(self, fn_id: bytes, blob: bytes | None, fn_name: str) -> Any:
        fn = self._functions.get(fn_id)
        if fn is None:
            if blob is None:
                raise LookupError(f"function {fn_name} ({fn_id.hex()}) was never sent here")
            fn = self._functions[fn_id] = pickle.loads(blob)
        return fn

    def handle_push_task(self, payload: list, call: Call) -> asyncio.Future:
        task = decode(PushTask, payload)
        task_id, fn_id, blob, fn_name, args_wire, slots, num_returns, owner, gpu_ids, group = task
        future = self.runtime.loop.create_future()
        if self.draining:
            future.set_result((RESCHEDULE, DRAINING, 0.0, [], 0.0))
            return future
        if gpu_ids is not None:
            set_visible_gpus(gpu_ids)
        self._task_futures.add(future)
        future.add_done_callback(self._task_futures.discard)
        try:
            fn = self.function(fn_id, blob, fn_name)
        except Exception as exc:
            future.set_result((FAILED, task_error(fn_name, exc), 0.0, [], 0.0))
            return future
        job = _Job(task_id, fn, fn_name, args_wire, slots, num_returns, call, future, owner)
        job.movable = True
        job.placement_group = group
        if inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn):
            start_pulls(self.core, job)
            self.start_async(job)
        elif self.task_blocked:
            # The task on the main thread waits for a value: this one would queue behind it
            # (and may be what it waits for), so it goes back to its owner to run elsewhere.
            future.set_result((RESCHEDULE, None, 0.0, [], 0.0))
        else:
            start_pulls(self.core, job)
            self.enqueue_main(job)
        return future

    def make_job(
        self,
        task_id: bytes,
        fn: Any,
        fn_name: str,
        args_wire: list,
        slots: list,
        num_returns: int,
        call: Call,
        owner: str = "",
    ) -> _Job:
        job = _Job(
            task_id,
            fn,
            fn_name,
            args_wire,
            slots,
            num_returns,
            call,
            self.runtime.loop.create_future(),
            owner,
        )
        start_pulls(self.core, job)
        return job

    def enqueue_main(self, job: _Job) -> None:
        """Run job on the main thread, after the jobs queued before it."""
        with self._queued_lock:
            self._queued[job.task_id] = job
        self._main_queue.put(job)

    def start_async(self, job: _Job, limiter: CallSlots | None = None) -> None:
        """Run an async job on the user loop, at most limiter's count at once."""
        self._running[job.task_id] = job
        job.on_user_loop = True
        self.user_loop.get().call_soon(self._start_on_user_loop, job, limiter)

    def _start_on_user_loop(self, job: _Job, limiter: CallSlots | None) -> None:
        loop = asyncio.get_running_loop()
        if limiter is None:
            if not self._cancelled_before_start(job):
                job.async_task = loop.create_task(self._run_async_now(job))
            return

        def start() -> None:
            if self._cancelled_before_start(job):
                limiter.release()
                return
            job.async_task = loop.create_task(self._run_limited(job, limiter))

        limiter.run(start)

    def _cancelled_before_start(self, job: _Job) -> bool:
        """Cancelled before it began (in a slot's queue, or on its way to the user loop): it
        never runs."""
        if not job.cancelled:
            return False
        self._running.pop(job.task_id, None)
        self.runtime.call_soon(_settle, job.future, (CANCELLED, None, 0.0, [], 0.0))
        return True

    def run_in_pool(self, job: _Job, pool: Any) -> None:
        """Run a sync job on a thread of pool (threaded actors)."""
        with self._queued_lock:
            self._queued[job.task_id] = job
        pool.submit(self._run_pooled, job)

    def _take(self, job: _Job) -> bool:
        """A thread is about to run job: True if it is still queued (not cancelled, bounced
        or replaced by a newer push of the same task)."""
        with self._queued_lock:
            if self._queued.get(job.task_id) is not job:
                return False
            del self._queued[job.task_id]
            return True

    def _unqueue(self, task_id: bytes) -> _Job | None:
        with self._queued_lock:
            return self._queued.pop(task_id, None)

    def _run_pooled(self, job: _Job) -> None:
        if not self._take(job):
            return
        job.thread_id = threading.get_ident()
        self._running[job.task_id] = job
        try:
            reply = self._run_sync(job)
        except TaskCancelledSignal:
            reply = (CANCELLED, None, 0.0, [], 0.0)
        except SystemExit as exc:
            _exit_process(exc)
        self._running.pop(job.task_id, None)
        self.runtime.call_soon(self._reply, job, reply)

    def _reply(self, job: _Job, reply: Reply) -> None:
        """Answer the caller once what the job read is let go of (loop thread): its mappings
        of shared arguments, and the store's and owners' acknowledgements that must precede
        the caller's freeing of them."""
        for obj_id in job.opened:
            self.core.shared.release(obj_id, job=True)
        reply = (reply[0], reply[1], reply[2], reply[3], job.started)
        self.core.after_borrows_settled(job.opened, lambda: _settle(job.future, reply))

    def running_names(self) -> list[str]:
        """The function or method names of the calls running now (for metrics)."""
        return [job.fn_name for job in list(self._running.values())]

    def handle_list_running(self, payload: Any, call: Call) -> list:
        """The tasks and actor calls this worker runs or has queued (for inspection)."""
        with self._queued_lock:
            queued = list(self._queued.values())
        running = list(self._running.values())
        return [
            {"task_id": job.task_id.hex(), "name": job.fn_name, "state": state}
            for state, jobs in (("running", running), ("queued", queued))
            for job in jobs
        ]

    def handle_cancel_task(self, payload: Any, call: Call | None) -> None:
        task_id, force, recursive = decode(CancelRunningTask, payload)
        if recursive:
            self.core.submitter.cancel_children(task_id, bool(force))
        job = self._unqueue(task_id)
        if job is not None:
            job.future.set_result((CANCELLED, None, 0.0, [], 0.0))
            return
        job = self._running.get(task_id)
        if job is None:
            return
        if force:
            logger.warning("force-cancelling %s: this worker exits", job.fn_name)
            os._exit(1)
        job.cancelled = True
        if job.on_user_loop:  # a job not started yet sees job.cancelled when it starts
            self.user_loop.get().call_soon(_cancel_async, job)
        elif job.thread_id == self._main_thread_id:
            signal.pthread_kill(self._main_thread_id, signal.SIGINT)
        elif job.thread_id is not None:  # a thread-pool thread: no signals there
            ctypes.pythonapi.PyThreadState_SetAsyncExc(
                ctypes.c_ulong(job.thread_id), ctypes.py_object(TaskCancelledSignal)
            )

    def is_cancelled(self, task_id: bytes) -> bool:
        """Whether actorflow.cancel was called on the running task task_id."""
        job = self._running.get(task_id)
        return job is not None and job.cancelled

    async def handle_drain(self, payload: list, call: Call) -> int:
        """The node drains: queued tasks go back to their owners, new ones too; answered once
        the running tasks are answered (how many were running)."""
        self.draining = decode(DrainWorker, payload).reason or "draining"
        with self._queued_lock:
            bounced = [job for job in self._queued.values() if job.movable]
            for job in bounced:
                del self._queued[job.task_id]
        for job in bounced:
            _settle(job.future, (RESCHEDULE, DRAINING, 0.0, [], 0.0))
        running = [f for f in self._task_futures if not f.done()]
        if running:
            await asyncio.wait(running)
        await asyncio.sleep(0)  # the replies' own callbacks write them first
        return len(running)

    def bounce_queued(self) -> None:
        """The running task blocked: give queued tasks back to their owners to run elsewhere,
        so that a task waiting on work queued behind it cannot deadlock."""
        with self._queued_lock:
            bounced = [job for job in self._queued.values() if job.movable]
            for job in bounced:
                del self._queued[job.task_id]
        for job in bounced:
            job.future.set_result((RESCHEDULE, None, 0.0, [], 0.0))

    # -- running (main thread for sync functions) -----------------------------------------------

    def on_sigint(self, signum: int, frame: Any) -> None:
        for job in self._running.values():
            if job.cancelled and job.thread_id == threading.get_ident():
                raise TaskCancelledSignal()

    def run_main_thread(self) -> None:
        """Serve sync tasks forever (the worker's main thread)."""
        while True:
            job = self._main_queue.get()
            if job is None:
                return
            if not self._take(job):
                continue  # cancelled, bounced, or pushed again under a new job
            job.thread_id = threading.get_ident()
            self._running[job.task_id] = job
            try:
                reply = self._run_sync(job)
            except TaskCancelledSignal:  # the signal landed just after the function returned
                reply = (CANCELLED, None, 0.0, [], 0.0)
            self._running.pop(job.task_id, None)
            self.runtime.call_soon(self._reply, job, reply)

    def stop(self) -> None:
        self._main_queue.put(None)

    def _run_sync(self, job: _Job) -> Reply:
        if self.exit_reason is not None:
            return self._refused(0.0)
        token = current_task_id.set(job.task_id)
        name_token = current_task_name.set(job.fn_name)
        caller_token = current_caller.set(job.owner)
        group_token = current_placement_group_wire.set(job.placement_group)
        job.started = time.time()
        start = time.perf_counter()
        try:
            args, kwargs = decode_args(self.core, job)
            if job.num_returns == STREAMING:
                index = 0
                for item in job.fn(*args, **kwargs):
                    wires, contained = serialize_returns(
                        self.core, item, 1, job.fn_name, job, index + 1
                    )
                    self.runtime.call_soon(job.call.stream, [index, wires[0], contained])
                    index += 1
                return (OK, [], time.perf_counter() - start, [], 0.0)
            value = job.fn(*args, **kwargs)
            if inspect.isgenerator(value):  # a generator called with a fixed num_returns
                value, failure = _drain(value)
                if failure is not None:
                    if 1 < job.num_returns <= len(value):
                        # Every return was made before it raised: as Ray, the values stand
                        # and the error is only logged.
                        logger.error(
                            "%s() raised after its last return value: %r", job.fn_name, failure
                        )
                        value = value[: job.num_returns]
                    elif 1 < job.num_returns:
                        # As Ray: the items it yielded are values, the returns after them its
                        # error.
                        return self._partial_returns(job, value, failure, start)
                    else:
                        raise failure
            wires, contained = serialize_returns(
                self.core, value, job.num_returns, job.fn_name, job
            )
            return (OK, wires, time.perf_counter() - start, contained, 0.0)
        except TaskCancelledSignal:
            return (CANCELLED, None, time.perf_counter() - start, [], 0.0)
        except ActorExitSignal as exit_signal:
            return self._actor_exit_reply(start, exit_signal)
        except KeyboardInterrupt as exc:
            if job.cancelled:
                return (CANCELLED, None, time.perf_counter() - start, [], 0.0)
            return (FAILED, task_error(job.fn_name, exc), time.perf_counter() - start, [], 0.0)
        except Exception as exc:
            return (FAILED, task_error(job.fn_name, exc), time.perf_counter() - start, [], 0.0)
        finally:
            current_placement_group_wire.reset(group_token)
            current_caller.reset(caller_token)
            current_task_name.reset(name_token)
            current_task_id.reset(token)

    def _partial_returns(self, job: _Job, items: list, failure: Exception, start: float) -> Reply:
        wires, contained = [], []
        for index, item in enumerate(items, start=1):
            item_wires, item_contained = serialize_returns(
                self.core, item, 1, job.fn_name, job, index
            )
            wires += item_wires
            contained += item_contained
        wires += [task_error(job.fn_name, failure)] * (job.num_returns - len(items))
        return (OK, wires, time.perf_counter() - start, contained, 0.0)

    def _actor_exit_reply(self, start: float, exit_signal: ActorExitSignal) -> Reply:
        reason = str(exit_signal) or "the actor exited: exit_actor() was called"
        # Set here, on the thread that ran the call, so that no call queued behind it runs.
        self.exit_reason = reason
        if self.on_actor_exit is not None:
            self.runtime.call_soon(self.on_actor_exit, reason)
        return self._refused(start)

    def _refused(self, start: float) -> Reply:
        error = errors.ActorDiedError(f"the actor is dead: {self.exit_reason}")
        return (FAILED, serialization.serialize_error(error), time.perf_counter() - start, [], 0.0)

    async def _run_limited(self, job: _Job, limiter: CallSlots) -> None:
        try:
            await self._run_async_now(job)
        finally:
            limiter.release()

    async def _run_async_now(self, job: _Job) -> None:
        """Run an async job (on the user loop); its reply goes back to the runtime loop."""
        if self.exit_reason is not None:
            self._running.pop(job.task_id, None)
            self.runtime.call_soon(_settle, job.future, self._refused(0.0))
            return
        current_task_id.set(job.task_id)  # this asyncio task has its own context copy
        current_task_name.set(job.fn_name)
        current_caller.set(job.owner)
        current_placement_group_wire.set(job.placement_group)
        job.started = time.time()
        start = time.perf_counter()
        reply: Reply
        try:
            if job.pulling is not None:  # arguments on other nodes: here before it runs
                await self.user_loop.get().wait_for_runtime_future(job.pulling)
                job.pulling.result()
            args, kwargs = decode_args(self.core, job)
            if job.num_returns == STREAMING:
                index = 0
                produced = job.fn(*args, **kwargs)
                items = produced if inspect.isasyncgen(produced) else _aiter(produced)
                async for item in items:
                    wires, contained = serialize_returns(
                        self.core, item, 1, job.fn_name, job, index + 1
                    )
                    self.runtime.call_soon(job.call.stream, StreamItem(index, wires[0], contained))
                    index += 1
                reply = (OK, [], time.perf_counter() - start, [], 0.0)
            else:
                if inspect.isasyncgenfunction(job.fn):
                    value = [item async for item in job.fn(*args, **kwargs)]
                else:
                    value = job.fn(*args, **kwargs)  # a plain method of an async actor, or
                    if inspect.isawaitable(value):  # a coroutine function
                        value = await value
                wires, contained = serialize_returns(
                    self.core, value, job.num_returns, job.fn_name, job
                )
                reply = (OK, wires, time.perf_counter() - start, contained, 0.0)
        except asyncio.CancelledError:
            reply = (CANCELLED, None, time.perf_counter() - start, [], 0.0)
        except ActorExitSignal as exit_signal:
            reply = self._actor_exit_reply(start, exit_signal)
        except Exception as exc:
            reply = (FAILED, task_error(job.fn_name, exc), time.perf_counter() - start, [], 0.0)
        if job.cancelled and reply[0] == OK:
            # The coroutine swallowed its CancelledError: it was still cancelled. The error is
            # both a TaskError (Ray's RayTaskError) and a TaskCancelledError, so either catches.
            cancelled = errors.TaskCancelledError(
                job.task_id.hex(),
                f"{job.fn_name}() was cancelled (it caught asyncio.CancelledError and returned)",
            )
            reply = (FAILED, task_error(job.fn_name, cancelled), reply[2], [], 0.0)
        self._running.pop(job.task_id, None)
        self.runtime.call_soon(self._reply, job, reply)


def _cancel_async(job: _Job) -> None:
    """On the user loop: cancel the job's task if it has begun."""
    if job.async_task is not None:
        job.async_task.cancel()


def _exit_process(exc: SystemExit) -> None:
    """sys.exit() in a call on a pool thread (threaded actors) ends the worker process, as it
    does on the main thread and in Ray; left alone it would end only that thread's call, which
    then never answers."""
    code = exc.code
    if code is not None and not isinstance(code, int):
        print(code, file=sys.stderr)  # what the interpreter does with sys.exit("message")
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # a closed or broken stream: the exit matters more
            pass
    os._exit(code if isinstance(code, int) else (0 if code is None else 1))


def _drain(generator: Any) -> tuple[list, Exception | None]:
    """The items a generator yields, and the exception it raised after them (or None)."""
    items: list = []
    try:
        for item in generator:
            items.append(item)
    except Exception as exc:
        return items, exc
    return items, None


async def _aiter(items: Any) -> Any:
    for item in items:
        yield item


def _settle(future: asyncio.Future, reply: Reply) -> None:
    if not future.done():
        future.set_result(reply)
