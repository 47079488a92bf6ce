"""The actor side of a compiled graph: a loop, started once per actor with ``__ray_call__``, that
reads the actor's input channels, calls its methods and writes their results, until teardown.

A sync actor runs the loop on its main thread (where its calls run; its other calls wait until
teardown, as in Ray); an async actor runs it on its event loop, awaiting async methods. A
method that raises sends the error on in place of its result; nodes below it pass it on
without being called, so the caller of that execution gets it and the next execution runs.
"""

from __future__ import annotations

import asyncio
import os
import pickle
import socket
from typing import Any

import cloudpickle

from actorflow._private.worker.executor import task_error
from actorflow.dag import channel as ch
from actorflow.dag import socket_channel as sc


def host_key(instance: Any) -> str:
    """Which machine this process is on (channels in shared memory need the same one), and
    which pid namespace (each end opens the driver's fds as /proc/<driver pid>/fd/<n>)."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            boot = f.read().strip()
    except OSError:
        boot = ""
    try:
        pids = os.readlink("/proc/self/ns/pid")
    except OSError:
        pids = ""
    return f"{socket.gethostname()}/{boot}/{pids}"


class _Loop:
    def __init__(self, instance: Any, plan: dict[str, Any], nonblocking: bool) -> None:
        self.instance = instance
        self.class_name = type(instance).__name__
        self.ops = plan["ops"]
        self.channels = _open_channels(plan["channels"], nonblocking)
        for channel in self.channels.values():
            if isinstance(channel, ch.Channel) and not nonblocking:  # a sync actor's reads
                channel.spin_seconds = plan.get("spin_seconds", 0.0)
        self.methods = [getattr(instance, op["method"]) for op in self.ops]

    def resolve(self, spec: Any, inputs: dict, results: list) -> tuple[Any, Any]:
        """(value, error) of one argument."""
        tag, item = spec
        if tag == "c":
            return item, None
        if tag == "op":
            return results[item]
        kind, payload = inputs[item]
        if kind == ch.ERROR:
            return None, payload
        return pickle.loads(payload), None

    def arguments(self, op: dict, inputs: dict, results: list) -> tuple[list, dict, Any]:
        args, kwargs, error = [], {}, None
        for spec in op["args"]:
            value, err = self.resolve(spec, inputs, results)
            error = error or err
            args.append(value)
        for key, spec in op["kwargs"].items():
            value, err = self.resolve(spec, inputs, results)
            error = error or err
            kwargs[key] = value
        return args, kwargs, error

    def send(self, op: dict, value: Any, error: Any, index: int) -> tuple[Any, Any]:
        if error is None:
            try:
                payload = cloudpickle.dumps(value, protocol=5)
            except Exception as exc:
                error = task_error(f"{self.class_name}.{op['method']}", exc)[1]
        for cid in op["outs"]:
            if error is None:
                self.channels[cid].write(ch.VALUE, payload)
            else:
                self.channels[cid].write(ch.ERROR, error)
        return value, error

    def failed(self, op: dict, exc: BaseException) -> bytes:
        return task_error(f"{self.class_name}.{op['method']}", exc)[1]

    def close(self) -> None:
        for channel in self.channels.values():
            channel.close()


def _open_channels(wire: dict, nonblocking: bool) -> dict[Any, Any]:
    """This actor's ends: shared memory, or sockets to and from other machines. Socket
    writers dial first (their readers already listen), then readers take their writers'
    connections, so no two actors wait on each other."""
    channels: dict[Any, Any] = {}
    order = sorted(wire.items(), key=lambda item: item[1][0] == "in")
    try:
        for cid, (kind, *where) in order:
            if kind == "shm":
                locator, slots, size = where
                channels[cid] = ch.Channel(tuple(locator), slots, size, nonblocking)  # type: ignore[arg-type]
            elif kind == "out":
                channels[cid] = sc.SocketChannel.connect(where[0], where[1], nonblocking)
            else:
                channels[cid] = sc.SocketChannel.accept(where[0], where[1], nonblocking)
    except BaseException:
        for channel in channels.values():
            channel.close()
        raise
    return channels


def run_sync(instance: Any, plan: dict[str, Any]) -> None:
    loop = _Loop(instance, plan, nonblocking=False)
    try:
        while True:
            results: list = []
            inputs: dict = {}  # a channel is read once per execution, however many ops use it
            for index, op in enumerate(loop.ops):
                for cid in op["reads"]:
                    if cid not in inputs:
                        inputs[cid] = loop.channels[cid].read()
                args, kwargs, error = loop.arguments(op, inputs, results)
                value = None
                if error is None:
                    try:
                        value = loop.methods[index](*args, **kwargs)
                    except Exception as exc:
                        error = loop.failed(op, exc)
                results.append(loop.send(op, value, error, index))
    except ch.Stopped:
        return
    finally:
        loop.close()


async def run_async(instance: Any, plan: dict[str, Any]) -> None:
    loop = _Loop(instance, plan, nonblocking=True)
    event_loop = asyncio.get_running_loop()
    try:
        while True:
            results: list = []
            inputs: dict = {}
            for index, op in enumerate(loop.ops):
                for cid in op["reads"]:
                    if cid not in inputs:
                        inputs[cid] = await loop.channels[cid].aread(event_loop)
                args, kwargs, error = loop.arguments(op, inputs, results)
                value = None
                if error is None:
                    try:
                        value = loop.methods[index](*args, **kwargs)
                        if asyncio.iscoroutine(value):
                            value = await value
                    except Exception as exc:
                        error = loop.failed(op, exc)
                results.append(loop.send(op, value, error, index))
    except ch.Stopped:
        return
    finally:
        loop.close()


def run_actor_loop(instance: Any, plan: dict[str, Any]) -> Any:
    """What ``__ray_call__`` runs in the actor: the loop, until teardown."""
    if plan["is_async"]:
        return run_async(instance, plan)
    run_sync(instance, plan)
    return os.getpid()
