"""Where calls enter, from any thread: a task, an actor method call, an actor's creation.

A task and an actor call take the same path: arguments packed once, the call record pinned with
what its arguments hold, refs for its results (or a generator) returned at once, and the record
handed to its submitter on the runtime loop.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

from actorflow._private import ids
from actorflow._private.ownership.state import Ownership
from actorflow._private.runtime import Runtime
from actorflow._private.worker.actor_submitter import ActorCall, ActorSubmitter
from actorflow._private.worker.arguments import ArgumentPacker
from actorflow._private.worker.calls import STREAMING, CallRecord, retry_exceptions_option
from actorflow._private.worker.object_ref import ObjectRef, ObjectRefGenerator
from actorflow._private.worker.runtime_envs import ResolvedEnv, RuntimeEnvs
from actorflow._private.worker.streams import StreamTable
from actorflow._private.worker.task_context import current_task_id
from actorflow._private.worker.task_submitter import PendingTask, TaskSubmitter


class Submission:
    def __init__(
        self,
        runtime: Runtime,
        ownership: Ownership,
        streams: StreamTable,
        packer: ArgumentPacker,
        tasks: TaskSubmitter,
        actors: ActorSubmitter,
        envs: RuntimeEnvs,
        resolve_ref: Callable[[Any, Callable[[list], None]], None],
        keep_process: Callable[[], None],
        on_loop_thread: Callable[[], bool],
        events_enabled: bool = True,
    ) -> None:
        self._runtime = runtime
        self._ownership = ownership
        self._streams = streams
        self._packer = packer
        self._tasks = tasks
        self._actors = actors
        self._envs = envs
        self._resolve_ref = resolve_ref  # resolve_ref(ref, callback): on the runtime loop
        self._keep_process = keep_process  # this worker now owns an actor: not idle
        self._on_loop_thread = on_loop_thread
        self._events_enabled = events_enabled  # Config.task_events_enabled

    def submit_task(
        self,
        *,
        fn_id: bytes,
        fn_blob: bytes,
        fn_name: str,
        args: tuple,
        kwargs: dict,
        num_returns: int,
        resources: dict[str, float],
        max_retries: int,
        retry_exceptions: Any,
        strategy: Any = None,
        runtime_env: ResolvedEnv | None = None,
        task_events: bool = True,
    ) -> Any:
        """Submit a task; return its ref, list of refs, or generator. runtime_env: its env
        (RuntimeEnvs.resolve); None inherits this process's."""
        env = self._envs.inherited if runtime_env is None else runtime_env
        args_wire, slots, nested = self._packer.pack(fn_name, args, kwargs)
        task = PendingTask(
            task_id=ids.new_task_id(),
            fn_id=fn_id,
            fn_blob=fn_blob,
            fn_name=fn_name,
            args_wire=args_wire,
            slots=slots,
            num_returns=num_returns,
            resources=resources,
            retries_left=max_retries,
            retry_exceptions=retry_exceptions_option(retry_exceptions),
            pinned=nested,
            strategy=strategy,
            runtime_env=env.wire,
            env_key=env.key,
            events=task_events and self._events_enabled,
        )
        if env.uploaded is not None:
            return self._start(task, self._envs.after_upload, env, self._tasks.submit, task)
        return self._start(task, self._tasks.submit, task)

    def submit_actor_call(
        self,
        handle: Any,
        method: str,
        fn_name: str,
        args: tuple,
        kwargs: dict,
        *,
        num_returns: int,
        max_retries: int,
        retry_exceptions: Any,
        task_events: bool = True,
    ) -> Any:
        """Call a method of the actor behind handle; return its ref(s) or generator."""
        args_wire, slots, nested = self._packer.pack(fn_name, args, kwargs)
        call = ActorCall(
            task_id=ids.new_task_id(),
            method=method,
            fn_name=fn_name,
            args_wire=args_wire,
            slots=slots,
            num_returns=num_returns,
            retries_left=max_retries,
            retry_exceptions=retry_exceptions_option(retry_exceptions),
            pinned=[handle, *nested],  # the handle called keeps the actor alive meanwhile
            out_of_order=handle._meta.get("out_of_order", False),
            actor_id=handle._actor_id,
            events=task_events and self._events_enabled,
        )
        return self._start(call, self._actors.submit, handle._actor_id, call)

    def _start(self, call: CallRecord, submit: Callable[..., None], *submit_args: Any) -> Any:
        call.parent_task_id = current_task_id.get()
        refs = [r for r in call.pinned if isinstance(r, ObjectRef)]
        refs += [slot[1] for slot in call.slots]
        if refs:  # most calls pass no refs: nothing to pin
            call.pin_ids = self._ownership.pin_for_call(refs)
        if call.num_returns == STREAMING:
            self._streams.open(call.task_id)
            result: Any = ObjectRefGenerator(call.task_id, self._runtime.address)
        else:
            self._ownership.return_ids_pending(call.return_ids)
            refs = [ObjectRef(obj_id, self._runtime.address) for obj_id in call.return_ids]
            result = refs[0] if call.num_returns == 1 else (refs or None)
        self._runtime.call_soon(submit, *submit_args)
        return result

    def create_actor(
        self,
        spec: dict[str, Any],
        wait: bool,
        keep: list | None = None,
        runtime_env: ResolvedEnv | None = None,
    ) -> tuple[str, dict[str, Any]]:
        """Register the actor with the GCS once its arguments are resolved (and its env's
        packages uploaded). With wait (named actors) the answer is waited for, so a taken name
        fails right here. What keep holds stays alive until the actor is dead for good."""
        env = self._envs.inherited if runtime_env is None else runtime_env
        spec["runtime_env"] = env.wire
        self._keep_process()
        channel = self._actors.expect(spec["actor_id"], list(keep or []))
        done = threading.Event()
        answer: list = []

        def replied(future: asyncio.Future) -> None:
            exc = future.exception()
            if exc is not None:  # its calls fail naming why (and the error is not left unread)
                self._actors.creation_failed(channel, exc)
            answer.append(future)
            done.set()

        def send() -> None:
            self._actors.create(channel, spec).add_done_callback(replied)

        def resolve_then_send() -> None:
            slots = spec["slots"]
            left = [len(slots)]
            if not slots:
                send()
                return
            for slot in slots:

                def resolved(wire: list, slot: list = slot) -> None:
                    slot[1] = wire
                    left[0] -= 1
                    if left[0] == 0:
                        send()

                self._resolve_ref(slot[1], resolved)

        self._envs.after_upload(env, resolve_then_send)
        if not wait or self._on_loop_thread():
            return spec["actor_id"], spec["meta"]
        done.wait()
        future = answer[0]
        exc = future.exception()
        if exc is not None:
            raise exc
        actor_id, _existed, meta = future.result()
        return actor_id, meta
