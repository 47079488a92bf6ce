"""Compiled graphs (Ray's ``dag.experimental_compile()``): a DAG of actor method calls whose
channels are set up once, so that each execution costs a few shared-memory writes and pipe
wake-ups instead of a task submission per node.

``build`` walks the graph, gives every edge that crosses a process a channel (see ``channel``),
and starts one loop per actor (``worker_loop``) with ``__ray_call__``. ``execute`` writes the
input to the channels read by the first nodes and returns ``CompiledDAGRef``s; getting one reads
the output channels, in order, in the caller's thread. Each actor's loop call stays pending
while the graph lives: if the actor dies, that call fails, and the graph fails with it.
"""

from __future__ import annotations

import os
import pickle
import select
import threading
import uuid
import weakref
from typing import Any

import cloudpickle

from actorflow._private import errors
from actorflow.dag import channel as ch
from actorflow.dag import socket_channel as sc
from actorflow.dag.class_node import ClassMethodNode
from actorflow.dag.compiled_dag_ref import CompiledDAGFuture, CompiledDAGRef
from actorflow.dag.dag_node import DAGNode
from actorflow.dag.input_node import InputAttributeNode, InputNode, read_part
from actorflow.dag.output_node import MultiOutputNode
from actorflow.dag.worker_loop import host_key, run_actor_loop

DEFAULT_MAX_INFLIGHT = 10
DEFAULT_BUFFER_SIZE = 1 << 20
TEARDOWN_SECONDS = 10.0
_DEATH_POLL_SECONDS = 0.5  # a loop's end wakes a get at once; this is a backstop


class _ActorPlan:
    def __init__(self, handle: Any) -> None:
        self.handle = handle
        self.ops: list[dict[str, Any]] = []
        self.op_of: dict[str, int] = {}  # node uuid -> index of its op
        self.channels: set[int] = set()


class CompiledDAG:
    """A compiled graph. ``execute(...)`` returns a ``CompiledDAGRef`` (a list of them for a
    ``MultiOutputNode``); ``teardown()`` stops the actors' loops (the actors live on)."""

    @classmethod
    def build(
        cls,
        root: DAGNode,
        submit_timeout: float | None = None,
        buffer_size_bytes: int | None = None,
        enable_asyncio: bool = False,
        max_inflight_executions: int | None = None,
        max_buffered_results: int | None = None,
        socket_channels: bool = False,
    ) -> CompiledDAG:
        inflight = (
            DEFAULT_MAX_INFLIGHT if max_inflight_executions is None else max_inflight_executions
        )
        if not isinstance(inflight, int) or inflight < 1:
            raise ValueError(f"_max_inflight_executions must be an int >= 1, got {inflight!r}")
        size = DEFAULT_BUFFER_SIZE if buffer_size_bytes is None else buffer_size_bytes
        if not isinstance(size, int) or size < 64:
            raise ValueError(f"_buffer_size_bytes must be an int >= 64, got {size!r}")
        graph = cls(inflight, size, enable_asyncio)
        graph._socket_channels = socket_channels
        graph._compile(root)
        return graph

    def __init__(self, max_inflight: int, slot_size: int, enable_asyncio: bool) -> None:
        self._max_inflight = max_inflight
        self._slot_size = slot_size
        self._enable_asyncio = enable_asyncio
        self._socket_channels = False  # sockets even between ends on one machine
        self._spin_seconds = 0.0  # how long readers poll before they sleep (channel.py)
        self._name = f"actorflow-cgraph-{uuid.uuid4().hex[:12]}"
        self._memories: list[ch.ChannelMemory] = []  # held here; the ends open them by pid/fd
        self._ends: dict[int, ch.Channel | sc.SocketChannel] = {}  # the driver's end of each
        self._inputs: list[tuple[Any, int]] = []  # (input part node, channel id)
        self._outputs: list[int] = []  # channel id of each output
        self._multi = False
        self._loop_refs: list[Any] = []
        self._actors: list[Any] = []
        self._submitted = 0
        self._read = 0  # executions whose outputs were read off the channels
        self._results: dict[int, list[tuple[int, bytes]]] = {}
        self._taken: dict[int, set[int]] = {}
        self._lock = threading.RLock()  # reading results
        self._submit_lock = threading.Lock()  # execute(): a get waiting does not hold it up
        self._broken: BaseException | None = None
        self._torn_down = False
        self._closed = False
        self._partial: dict[int, tuple[int, bytes]] = {}  # outputs read before a timeout
        self._death_r, self._death_w = os.pipe()
        self._pollers: dict[int, Any] = {}
        self._finalizer = weakref.finalize(self, _close_memories, self._memories)

    # -- compiling ------------------------------------------------------------------------------

    def _new_channel(self) -> int:
        cid = len(self._memories)
        memory = ch.ChannelMemory(f"{self._name}-{cid}", self._max_inflight, self._slot_size)
        self._memories.append(memory)
        self._ends[cid] = ch.Channel(memory.locator, self._max_inflight, self._slot_size)
        return cid

    def _compile(self, root: DAGNode) -> None:
        try:
            self._plan(root)
        except BaseException:
            self._close_files()
            raise

    def _plan(self, root: DAGNode) -> None:
        self._multi = isinstance(root, MultiOutputNode)
        outputs = list(root._bound_args) if self._multi else [root]
        nodes = _topological([n for n in outputs if isinstance(n, DAGNode)])
        plans: dict[str, _ActorPlan] = {}
        edge: dict[tuple[str, str], int] = {}  # (producer uuid, consumer actor) -> channel
        input_parts: dict[str, tuple[Any, int]] = {}
        for node in nodes:
            if isinstance(node, (InputNode, InputAttributeNode)):
                continue
            if not isinstance(node, ClassMethodNode) or node._get_actor_handle() is None:
                raise ValueError(
                    f"a compiled graph is made of methods of live actors "
                    f"(actor.method.bind(...) on actors created with .remote()); {node!r} is not"
                )
            if node._bound_options.get("num_returns", 1) != 1:
                raise ValueError("compiled graphs support methods with num_returns=1 only")
            handle = node._get_actor_handle()
            plan = plans.setdefault(handle._actor_id, _ActorPlan(handle))
            op: dict[str, Any] = {"method": node._method_name, "reads": [], "outs": []}

            def spec(value: Any, plan: _ActorPlan = plan, op: dict = op, node: Any = node) -> Any:
                return self._spec(value, plan, op, node, edge, plans, input_parts)

            op["args"] = [spec(a) for a in node._bound_args]
            op["kwargs"] = {k: spec(v) for k, v in node._bound_kwargs.items()}
            plan.op_of[node._stable_uuid] = len(plan.ops)
            plan.ops.append(op)
        for output in outputs:
            if not isinstance(output, DAGNode) or isinstance(
                output, (InputNode, InputAttributeNode)
            ):
                raise ValueError("a compiled graph's outputs must be actor method nodes")
            key = (output._stable_uuid, "driver")
            if key not in edge:
                edge[key] = self._new_channel()
                self._link(output, edge[key], plans, input_parts)
            self._outputs.append(edge[key])
        if not plans:
            raise ValueError("a compiled graph needs at least one actor method node")
        for plan in plans.values():
            if not plan.channels:  # nothing to wait on: the driver's execute() starts it
                cid = self._new_channel()
                plan.ops[0]["reads"].append(cid)
                plan.channels.add(cid)
                input_parts[f"trigger{cid}"] = (None, cid)
        self._inputs = list(input_parts.values())
        self._check_inputs_used(nodes)
        self._start(plans)

    def _spec(
        self,
        value: Any,
        plan: _ActorPlan,
        op: dict[str, Any],
        node: Any,
        edge: dict[tuple[str, str], int],
        plans: dict[str, _ActorPlan],
        input_parts: dict[str, tuple[Any, int]],
    ) -> Any:
        """How op reads one bound argument: a constant, a channel, or an earlier op's result."""
        if isinstance(value, DAGNode):
            if value._stable_uuid in plan.op_of:
                return ("op", plan.op_of[value._stable_uuid])
            key = (value._stable_uuid, plan.handle._actor_id)
            if key not in edge:
                edge[key] = self._new_channel()
                self._link(value, edge[key], plans, input_parts)
            cid = edge[key]
            plan.channels.add(cid)
            if cid not in op["reads"]:
                op["reads"].append(cid)
            return ("ch", cid)
        if _has_node(value):
            raise ValueError(
                f"a compiled graph's nodes take DAG nodes as whole arguments, not inside "
                f"containers: {node!r} has one in {value!r}"
            )
        return ("c", value)

    def _check_inputs_used(self, nodes: list[DAGNode]) -> None:
        """As Ray: every part of the input that was read off the InputNode feeds the graph."""
        used = {n._stable_uuid for n in nodes}
        for node in nodes:
            if isinstance(node, InputNode):
                parts = node.__dict__["input_attribute_nodes"]
                unused = [str(key) for (key, _), p in parts.items() if p._stable_uuid not in used]
                if unused:
                    names = ", ".join(str(key) for key, _ in parts)
                    raise ValueError(
                        f"Compiled Graph expects input to be accessed using all of attributes "
                        f"{names}, but {', '.join(unused)} is unused. Ensure all input "
                        f"attributes are used and contribute to the computation of the "
                        f"Compiled Graph output."
                    )

    def _link(self, producer: DAGNode, cid: int, plans: dict, input_parts: dict) -> None:
        """Make producer write channel cid: the driver for input parts, else its actor."""
        if isinstance(producer, (InputNode, InputAttributeNode)):
            input_parts[f"{producer._stable_uuid}/{cid}"] = (producer, cid)
            return
        for plan in plans.values():
            if producer._stable_uuid in plan.op_of:
                plan.ops[plan.op_of[producer._stable_uuid]]["outs"].append(cid)
                plan.channels.add(cid)
                return
        raise ValueError(f"{producer!r} is not part of this compiled graph")

    def _start(self, plans: dict[str, _ActorPlan]) -> None:
        import actorflow._private.worker.context as context

        core = context.ensure_core()
        here = host_key(None)
        handles = [p.handle for p in plans.values()]
        keys = core.get([h.__ray_call__.remote(host_key) for h in handles], None)
        host_of = {id(plan): key for plan, key in zip(plans.values(), keys, strict=True)}
        if len(plans) + 1 <= (os.cpu_count() or 1):  # the driver and each actor: a core each
            self._spin_seconds = ch.SPIN_SECONDS
        wires = {id(plan): self._shm_wire(plan) for plan in plans.values()}
        # A channel whose ends are not both on this machine (the driver's memory holds every
        # shared-memory channel) is a socket: the reader listens, the writer dials it.
        accepts: list[tuple[int, str, bytes]] = []
        for cid, (writer, reader) in self._ends_of(plans).items():
            on_this_machine = host_of.get(id(writer), here) == host_of.get(id(reader), here) == here
            if on_this_machine and not self._socket_channels:
                continue
            self._ends.pop(cid).close()
            key, secret = f"{self._name}-{cid}", sc.new_secret()
            if reader is None:
                address = sc.listen(None, key, _host_of(core.address))
                accepts.append((cid, key, secret))
            else:
                handle = reader.handle
                address = core.get(
                    handle.__ray_call__.remote(
                        sc.listen, key, core.get(handle.__ray_call__.remote(sc.host_of), None)
                    ),
                    None,
                )
                wires[id(reader)]["channels"][cid] = ["in", key, secret]
            if writer is None:
                self._ends[cid] = sc.SocketChannel.connect(address, secret)
            else:
                wires[id(writer)]["channels"][cid] = ["out", address, secret]
        for plan in plans.values():
            ref = plan.handle.__ray_call__.remote(run_actor_loop, wires[id(plan)])
            ref.add_done_callback(self._loop_ended)
            self._loop_refs.append(ref)
            self._actors.append(plan.handle)
        for cid, key, secret in accepts:  # outputs from actors elsewhere: they dial in now
            self._ends[cid] = sc.SocketChannel.accept(key, secret)

    def _shm_wire(self, plan: _ActorPlan) -> dict[str, Any]:
        return {
            "ops": plan.ops,
            "channels": {
                cid: ["shm", self._memories[cid].locator, self._max_inflight, self._slot_size]
                for cid in plan.channels
            },
            "is_async": bool(plan.handle._meta.get("is_async")),
            "spin_seconds": self._spin_seconds,
        }

    def _ends_of(self, plans: dict[str, _ActorPlan]) -> dict[int, list[Any]]:
        """cid -> [writer plan, reader plan] (None: the driver) of every channel."""
        ends: dict[int, list[Any]] = {cid: [None, None] for cid in self._ends}
        for plan in plans.values():
            for op in plan.ops:
                for cid in op["outs"]:
                    ends[cid][0] = plan
                for cid in op["reads"]:
                    ends[cid][1] = plan
        return ends

    def _loop_ended(self, ref: Any) -> None:
        try:
            os.write(self._death_w, b"x")
        except OSError:
            pass

    # -- executing ------------------------------------------------------------------------------

    def execute(self, *args: Any, **kwargs: Any) -> Any:
        """Run the graph once on this input; a ``CompiledDAGRef`` (a list of them for a
        ``MultiOutputNode``) for its result."""
        with self._submit_lock:
            self._check_usable()
            if self._submitted - self._read >= self._max_inflight:
                raise errors.CgraphCapacityExceededError(
                    f"the compiled graph can't have more than {self._max_inflight} in-flight "
                    f"executions, and {self._submitted - self._read} are in flight: get a "
                    f"result before executing again, or compile with a larger "
                    f"_max_inflight_executions"
                )
            value = args[0] if len(args) == 1 and not kwargs else None
            whole = value if len(args) == 1 and not kwargs else _Input(args, kwargs)
            encoded: dict[str, bytes] = {}
            for part, cid in self._inputs:
                if part is None:
                    payload = b"N."  # pickle of None: a trigger
                else:
                    key = part._stable_uuid
                    if key not in encoded:
                        item = whole
                        if isinstance(part, InputAttributeNode):
                            item = read_part(whole, part._key, part._accessor_method)
                        encoded[key] = cloudpickle.dumps(item, protocol=5)
                    payload = encoded[key]
                self._ends[cid].write(ch.VALUE, payload)
            seq = self._submitted
            self._submitted += 1
        refs = [CompiledDAGRef(self, seq, i) for i in range(len(self._outputs))]
        return refs if self._multi else refs[0]

    async def execute_async(self, *args: Any, **kwargs: Any) -> Any:
        """execute(...) for asyncio code: awaits to a ``CompiledDAGFuture`` (a list of them),
        each awaitable for its value."""
        refs = self.execute(*args, **kwargs)
        if self._multi:
            return [CompiledDAGFuture(r) for r in refs]
        return CompiledDAGFuture(refs)

    def _check_usable(self) -> None:
        if self._broken is not None:
            raise self._broken
        if self._torn_down:
            raise errors.ChannelError("the compiled graph has been torn down")

    def _get(self, seq: int, index: int, timeout: float | None) -> Any:
        with self._lock:
            while self._read <= seq:
                self._read_one(timeout)
            kind, payload = self._results[seq][index]
            self._taken.setdefault(seq, set()).add(index)
            self._forget_if_taken(seq)
        if kind == ch.ERROR:
            error = pickle.loads(payload)
            if isinstance(error, errors.TaskError):
                raise error.as_instanceof_cause()
            raise error
        return pickle.loads(payload)

    def _drop(self, seq: int, index: int) -> None:
        """A ref dropped without get: its result is not kept once read off its channel."""
        with self._lock:
            if self._closed:
                return
            self._taken.setdefault(seq, set()).add(index)
            self._forget_if_taken(seq)

    def _forget_if_taken(self, seq: int) -> None:
        if seq in self._results and len(self._taken.get(seq, ())) == len(self._outputs):
            del self._results[seq]
            del self._taken[seq]

    def _read_one(self, timeout: float | None) -> None:
        """Read the next execution's outputs off their channels (caller holds the lock)."""
        deadline = None if timeout is None else _now() + timeout
        seq = self._read
        got = self._partial
        for cid in dict.fromkeys(self._outputs):
            if cid in got:
                continue
            while not self._ready(cid, _slice(deadline)):
                self._check_alive()
                if deadline is not None and _now() >= deadline:
                    raise errors.ChannelTimeoutError(
                        f"the compiled graph's result #{seq} did not arrive within "
                        f"{timeout} seconds (it is still running)"
                    )
            self._check_alive()
            try:
                got[cid] = self._ends[cid].read()
            except ch.Stopped:  # teardown() from another thread
                raise errors.ChannelError("the compiled graph has been torn down") from None
        self._partial = {}
        self._results[seq] = [got[cid] for cid in self._outputs]
        self._read += 1
        self._forget_if_taken(seq)

    def _ready(self, cid: int, timeout: float) -> bool:
        """Whether output channel cid has a message; an actor's loop ending wakes this too."""
        if self._ends[cid].pending():
            return True
        poller = self._pollers.get(cid)
        if poller is None:
            poller = self._pollers[cid] = select.poll()
            poller.register(self._ends[cid].fd, select.POLLIN)
            poller.register(self._death_r, select.POLLIN)
        if self._spin_seconds:
            ch.spin_until_readable(poller, self._spin_seconds)
        for fd, _ in poller.poll(int(timeout * 1000)):
            if fd == self._ends[cid].fd:
                return True
        return False

    def _check_alive(self) -> None:
        if self._broken is not None:
            raise self._broken
        if self._torn_down:
            raise errors.ChannelError("the compiled graph has been torn down")
        for handle, ref in zip(self._actors, self._loop_refs, strict=True):
            if not ref.done():
                continue
            exc = ref.exception()
            if isinstance(exc, errors.ActorError):
                error: BaseException = errors.ActorDiedError(
                    f"an actor of the compiled graph died ({handle!r}): {exc}; the graph is "
                    f"torn down",
                    cause=exc,
                )
            else:
                error = errors.ChannelError(
                    f"the loop of actor {handle!r} in the compiled graph ended: {exc!r}"
                )
            self._broken = error
            self._stop_loops(wait=False)
            self._torn_down = True
            self._close_files()
            raise error

    # -- teardown -------------------------------------------------------------------------------

    def _stop_loops(self, wait: bool) -> None:
        for end in self._ends.values():
            end.stop()
        if wait:
            deadline = _now() + TEARDOWN_SECONDS
            for ref in self._loop_refs:
                try:
                    ref.future().result(max(0.0, deadline - _now()))
                except Exception:  # a dead actor's loop: nothing to wait for
                    pass

    def teardown(self) -> None:
        """Stop every actor's loop (the actors stay alive and take calls again) and remove the
        channels. Results not read yet are lost. Idempotent."""
        with self._lock:
            if self._torn_down:
                return
            self._torn_down = True
        self._stop_loops(wait=True)
        self._close_files()

    def _close_files(self) -> None:
        if self._closed:
            return
        self._closed = True
        for end in self._ends.values():
            end.close()
        self._ends.clear()
        _close_memories(self._memories)
        for fd in (self._death_r, self._death_w):
            try:
                os.close(fd)
            except OSError:
                pass

    def __del__(self) -> None:
        # Dropped without teardown(): stop the loops and remove the files, waiting for nothing.
        if not getattr(self, "_torn_down", True):
            self._torn_down = True
            try:
                self._stop_loops(wait=False)
                self._close_files()
            except Exception:
                pass


class _Input:
    """The input of execute(*args, **kwargs) given several values (as Ray's DAGInputData)."""

    def __init__(self, args: tuple, kwargs: dict[str, Any]) -> None:
        self.args, self.kwargs = args, kwargs

    def __getitem__(self, key: int | str) -> Any:
        return self.args[key] if isinstance(key, int) else self.kwargs[key]

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or name in ("args", "kwargs"):
            raise AttributeError(name)
        return self.kwargs[name]


def _close_memories(memories: list[ch.ChannelMemory]) -> None:
    for memory in memories:
        memory.close()
    memories.clear()


def _now() -> float:
    import time

    return time.monotonic()


def _slice(deadline: float | None) -> float:
    if deadline is None:
        return _DEATH_POLL_SECONDS
    return max(0.0, min(_DEATH_POLL_SECONDS, deadline - _now()))


def _has_node(value: Any) -> bool:
    from actorflow.dag.dag_node import _nodes_in

    return bool(_nodes_in(value))


def _topological(outputs: list[DAGNode]) -> list[DAGNode]:
    """Every node the outputs read, producers before their readers."""
    order: list[DAGNode] = []
    seen: set[str] = set()
    stack: list[tuple[DAGNode, bool]] = [(n, False) for n in reversed(outputs)]
    while stack:
        node, expanded = stack.pop()
        if expanded:
            order.append(node)
            continue
        if node._stable_uuid in seen:
            continue
        seen.add(node._stable_uuid)
        stack.append((node, True))
        for child in reversed(node._get_toplevel_child_nodes()):
            if child._stable_uuid not in seen:
                stack.append((child, False))
    return order


__all__ = ["CompiledDAG", "CompiledDAGFuture", "CompiledDAGRef"]


def _host_of(address: str) -> str:
    return address.removeprefix("tcp://").rsplit(":", 1)[0]
