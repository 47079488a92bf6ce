"""A driver process for test_shm_lifetime.py.

    python shm_driver.py SESSION_ROOT [ADDRESS]

Starts a local cluster (or joins the one at ADDRESS), puts large numpy arrays and bytes, reads
them back (checking they are read-only views of the store's shared memory), has an actor keep
views of them, compiles a graph through that actor (its channels are shared memory too) and has
a task return a large result, then prints one JSON line:

    {"driver": pid, "prefix": "<node>:", "graph": "<graph's channel name>", "actor": pid,
     "workers": [pid, ...],
     "descendants": [pid, ...], "stored_bytes": N}

and blocks until killed (reads stdin, which the test never writes to).
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np

import actorflow
from actorflow._private.worker import context
from actorflow.dag import InputNode

MiB = 1 << 20
SEGMENT_MARK = "/memfd:actorflow:"


def mapping_of(address: int) -> str:
    """The name of what is mapped at address in this process."""
    with open("/proc/self/maps") as f:
        for line in f:
            fields = line.split(maxsplit=5)
            start, end = (int(x, 16) for x in fields[0].split("-"))
            if start <= address < end:
                return fields[5].strip() if len(fields) == 6 else ""
    return ""


@actorflow.remote
class Holder:
    def keep(self, refs: list) -> tuple[int, list[str]]:
        self.values = actorflow.get(refs)  # views onto the segments, kept
        return os.getpid(), [mapping_of(v.ctypes.data) for v in self.values]

    def echo(self, value: bytes) -> bytes:
        return value


@actorflow.remote
def getpid() -> int:
    return os.getpid()


@actorflow.remote
def make(n: int) -> np.ndarray:
    return np.full(n // 8, 7.0)


def descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    found, stack = [], [root]
    while stack:
        for pid in children.get(stack.pop(), []):
            found.append(pid)
            stack.append(pid)
    return found


def main() -> None:
    session_root = sys.argv[1]
    if len(sys.argv) > 2:
        actorflow.init(address=sys.argv[2])
    else:
        actorflow.init(num_cpus=2, _temp_dir=session_root)
    arrays = [np.full(40 * MiB // 8, float(i)) for i in range(4)]  # 160 MiB
    refs = [actorflow.put(a) for a in arrays]
    refs.append(actorflow.put(b"x" * (16 * MiB)))
    del arrays
    for i, ref in enumerate(refs[:4]):
        got = actorflow.get(ref)
        assert not got.flags.writeable, "a stored array must be read-only"
        assert mapping_of(got.ctypes.data).startswith(SEGMENT_MARK), mapping_of(got.ctypes.data)
        assert float(got[0]) == float(i)
    assert actorflow.get(refs[4]) == b"x" * (16 * MiB)
    holder = Holder.remote()
    actor_pid, actor_maps = actorflow.get(holder.keep.remote(refs[:4]), timeout=60)
    assert all(m.startswith(SEGMENT_MARK) for m in actor_maps), actor_maps
    with InputNode() as inp:
        graph = holder.echo.bind(inp).experimental_compile()  # channels: memfds too
    large = b"y" * (2 * MiB)  # larger than a channel's slot: a memfd of its own
    assert graph.execute(large).get(timeout=60) == large
    result = make.remote(64 * MiB)  # a worker's result: a segment it filled
    assert float(actorflow.get(result, timeout=60)[0]) == 7.0
    worker_pid = actorflow.get(getpid.remote(), timeout=60)
    core = context.core_or_none()
    prefix = core.shared._shm_prefix if core is not None else ""
    print(
        json.dumps(
            {
                "driver": os.getpid(),
                "prefix": prefix,
                "graph": graph._name,
                "actor": actor_pid,
                "workers": sorted({actor_pid, worker_pid}),
                "descendants": descendants(os.getpid()),
                "stored_bytes": 4 * 40 * MiB + 16 * MiB + 64 * MiB,
            }
        ),
        flush=True,
    )
    sys.stdin.read()  # until killed


if __name__ == "__main__":
    main()
