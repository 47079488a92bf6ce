"""Entry point of a worker process: ``python -m actorflow._private.worker.main --spec PATH``.

Everything the worker needs comes in one WorkerSpec (protocol/worker_spec.py), read from the
file at PATH that the node's worker pool wrote (and unlinked once read). The runtime loop runs on
a thread; the main thread runs synchronous tasks. The worker never outlives its node: it asks
the kernel for SIGKILL when its parent dies, and exits when its connection to the raylet closes.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import logging
import os
import signal
import sys

from actorflow._private.protocol.worker_spec import WorkerSpec
from actorflow._private.runtime_env.spec import expand_env_vars, run_setup_hook

_PR_SET_PDEATHSIG = 1


def die_with_parent(expected_parent: int) -> None:
    """SIGKILL when the parent exits; exit now if expected_parent (0: unchecked) is gone."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass  # not Linux: the raylet-connection check below still ends us
    if expected_parent and os.getppid() != expected_parent:
        os._exit(1)  # the parent died before prctl took effect


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="actorflow worker")
    parser.add_argument("--spec", required=True, help="the WorkerSpec file (unlinked once read)")
    parser.add_argument(
        "--forked", action="store_true", help="forked by the fork server (set env_vars here)"
    )
    return parser.parse_args(argv)


def apply_runtime_env(spec: WorkerSpec, forked: bool) -> None:
    """The worker's runtime_env, before any user code: its variables (a spawned worker got them
    in its environment already), its working directory, and its import path: working_dir and
    py_modules first, then the driver's (whose site-packages come after a virtualenv's own)."""
    if forked and spec.env_vars:
        os.environ.update(expand_env_vars(spec.env_vars, os.environ))
    if spec.working_dir:
        os.chdir(spec.working_dir)
    paths = list(spec.sys_path)
    if spec.python:
        packages = [p for p in paths if p.endswith(("site-packages", "dist-packages"))]
        paths = [p for p in paths if p not in packages]
        sys.path.extend(p for p in packages if p not in sys.path)
    for path in reversed(paths):
        if path not in sys.path:
            sys.path.insert(0, path)
    for path in reversed(spec.env_sys_path):
        sys.path.insert(0, path)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    spec = WorkerSpec.consume(args.spec)
    die_with_parent(spec.parent_pid)
    apply_runtime_env(spec, args.forked)
    from actorflow._private.fd_limit import raise_open_file_limit

    raise_open_file_limit()

    from actorflow._private.loop_thread import LoopThread
    from actorflow._private.protocol import core as core_messages
    from actorflow._private.protocol import raylet
    from actorflow._private.runtime import Runtime
    from actorflow._private.worker import context, output
    from actorflow._private.worker.actor_host import ActorHost
    from actorflow._private.worker.core_worker import CoreWorker
    from actorflow._private.worker.executor import TaskExecutor
    from actorflow._private.worker.task_context import current_task_name
    from transports import TLSConfig

    config = spec.config
    raylet_address = spec.raylet_address
    worker_id = spec.worker_id
    loop_thread = LoopThread()
    loop_thread.start()
    tls = TLSConfig.from_dir(spec.tls_dir) if spec.tls_dir else None
    runtime = Runtime(
        loop_thread.loop, spec.token, config.max_frame_size, config.connect_timeout, tls
    )
    # On the node's own interface: peers on other machines must reach this worker.
    host = spec.node_host or "127.0.0.1"
    loop_thread.run(runtime.start(f"tcp://{host}:0"), timeout=30)
    core = CoreWorker(
        runtime,
        config,
        mode="worker",
        raylet_address=raylet_address,
        gcs_address=spec.gcs_address,
        node_id=spec.node_id,
        worker_id=worker_id,
        job_id=spec.job_id,
        namespace=spec.namespace,
        shm_prefix=spec.shm_prefix,
        spill_dir=spec.spill_dir,
        segment_socket=spec.segment_socket,
    )
    core.job_info = {
        "namespace": spec.namespace,
        "config": {"sys_path": list(spec.sys_path), "log_address": spec.log_address},
    }
    core.runtime_envs.adopt(spec.runtime_env)  # what its tasks and actors inherit
    executor = TaskExecutor(core)
    runtime.register_actor("core", core)
    runtime.register_actor("worker", executor)
    core.extensions["is_cancelled"] = executor.is_cancelled  # get_runtime_context().is_canceled()
    runtime.register_actor("actor", ActorHost(core, executor))
    core.metrics.running = executor.running_names
    context.set_core(core)
    hook = (spec.runtime_env or {}).get("worker_process_setup_hook")
    if hook is not None:  # before any task: a hook that fails ends the worker (logged)
        run_setup_hook(hook)

    def blocked() -> None:
        executor.task_blocked = True  # tasks pushed from now on are given back at once
        runtime.call_soon(executor.bounce_queued)
        runtime.call_soon(runtime.tell, raylet_address, raylet.WorkerBlocked(worker_id))

    def unblocked() -> None:
        executor.task_blocked = False
        runtime.call_soon(runtime.tell, raylet_address, raylet.WorkerUnblocked(worker_id))

    core.blocking.on_blocked, core.blocking.on_unblocked = blocked, unblocked
    for hook in filter(None, config.worker_extensions.split(",")):
        module, _, name = hook.partition(":")
        getattr(__import__(module, fromlist=[name]), name)(core, executor)

    log_address = core.log_address = spec.log_address
    if log_address:

        def forwarder(is_stderr: bool):
            def forward(text: str) -> None:
                label = output.origin_label(current_task_name.get())
                runtime.call_soon(
                    runtime.tell, log_address, core_messages.WorkerOutput(label, is_stderr, text)
                )

            return forward

        sys.stdout = output.ForwardingStream(sys.stdout, forwarder(False))  # type: ignore
        sys.stderr = output.ForwardingStream(sys.stderr, forwarder(True))  # type: ignore
    # After the streams are replaced, so that logging in tasks reaches the driver too.
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )

    def raylet_gone() -> None:
        os._exit(0)

    async def register() -> None:
        await runtime.ask(
            raylet_address, raylet.RegisterWorker(worker_id, runtime.address, os.getpid())
        )
        runtime.on_peer_lost(raylet_address, raylet_gone)

    try:
        loop_thread.run(register(), timeout=config.worker_register_timeout)
    except Exception as exc:
        print(
            f"worker {worker_id}: could not register with the raylet at {raylet_address}: {exc}",
            file=sys.__stderr__,
        )
        os._exit(1)
    signal.signal(signal.SIGINT, executor.on_sigint)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    # What start-up made (modules, classes, the runtime) lives as long as the process: out of
    # the collector's full passes, each of which would walk all of it again (~24,000 objects,
    # every few thousand calls; about a tenth of a worker's CPU per call in batches). Objects
    # made from here on, the tasks' and the actor's, are collected as before.
    gc.freeze()
    executor.run_main_thread()


if __name__ == "__main__":
    main()
