"""Shared memory dies with its users (issue 17): the object store's segments are memfds, handed
to the processes that map them over a unix socket, and compiled graphs' channels are memfds the
driver holds, so however processes end -- SIGKILL of the driver, of a worker holding a mapping,
of every node process at once -- nothing of ours is left in /dev/shm and no memory stays
allocated.

"No memory stays allocated" is checked where the kernel decides it: a memfd's memory is freed
when no process has an fd or a mapping of it, so the tests look through every process's
/proc/PID/fd and /proc/PID/maps for the store's segments (named ``/memfd:actorflow:<node>:...``).
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from helpers import poll_until

import actorflow
from actorflow._private.node import segment_socket, segments
from actorflow._private.worker import context
from actorflow.util.local_cluster import LocalCluster

pytestmark = pytest.mark.timeout(120)

SCRIPTS = Path(__file__).resolve().parent / "scripts"
MiB = 1 << 20
SEGMENT_MARK = "/memfd:actorflow:"


# -- helpers ------------------------------------------------------------------------------------


def holders(prefix: str) -> dict[int, set[str]]:
    """{pid: segments} of every process with an fd or a mapping of a segment named prefix*:
    while this is not empty, some of that memory is still allocated."""
    mark = SEGMENT_MARK + prefix
    found: dict[int, set[str]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        names: set[str] = set()
        try:
            for fd in os.listdir(f"/proc/{entry}/fd"):
                try:
                    target = os.readlink(f"/proc/{entry}/fd/{fd}")
                except OSError:
                    continue
                if target.startswith(mark):
                    names.add(target.removesuffix(" (deleted)"))
            with open(f"/proc/{entry}/maps") as f:
                for line in f:
                    fields = line.split(maxsplit=5)
                    if len(fields) == 6 and fields[5].startswith(mark):
                        names.add(fields[5].strip().removesuffix(" (deleted)"))
        except OSError:  # it ended, or is not ours to read
            continue
        if names:
            found[int(entry)] = names
    return found


def ours_in_dev_shm(prefix: str, pids: list[int]) -> list[str]:
    """Entries of /dev/shm that are ours: named after the node or one of its processes."""
    if not os.path.isdir("/dev/shm"):
        return []
    node = prefix.rstrip(":")
    marks = [node] + [f"actorflow-{pid}-" for pid in pids]
    return [n for n in os.listdir("/dev/shm") if any(m in n for m in marks)]


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def kill_all(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def start_driver(session_root: str, address: str = "") -> tuple[subprocess.Popen, dict]:
    """The driver script, and the JSON line it prints once its objects are stored and read."""
    args = [sys.executable, str(SCRIPTS / "shm_driver.py"), session_root]
    if address:
        args.append(address)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(sys.path),
        "ACTORFLOW_SESSION_ROOT": session_root,  # where a joining driver finds the token
    }
    process = subprocess.Popen(
        args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], 90)
    line = process.stdout.readline() if ready else b""
    if not line:
        process.kill()
        _, err = process.communicate(timeout=30)
        raise AssertionError(f"the driver printed nothing; its stderr:\n{err.decode()[-3000:]}")
    return process, json.loads(line)


def eventually(predicate, timeout: float, describe) -> None:
    """poll_until, failing with describe() (what is still wrong, when it failed)."""
    try:
        poll_until(predicate, timeout=timeout)
    except AssertionError:
        raise AssertionError(describe()) from None


def assert_all_gone(prefix: str, pids: list[int]) -> None:
    eventually(
        lambda: not [p for p in pids if alive(p)],
        60,
        lambda: f"processes still running: {[p for p in pids if alive(p)]}",
    )
    eventually(
        lambda: not holders(prefix),
        30,
        lambda: f"segments still held (their memory allocated): {holders(prefix)}",
    )
    assert ours_in_dev_shm(prefix, pids) == []


# -- SIGKILL of a driver with its embedded cluster ----------------------------------------------


def test_sigkill_of_the_driver_frees_every_segment(tmp_path):
    process, info = start_driver(str(tmp_path))
    everyone = [info["driver"], *info["descendants"]]
    try:
        prefix = info["prefix"]
        assert prefix
        held = holders(prefix)
        # The driver (its store's fds, its views) and the actor (its views) hold segments.
        assert info["driver"] in held and info["actor"] in held, held
        assert set(info["workers"]) <= set(info["descendants"])
        sizes = segment_sizes(info["driver"], prefix)
        assert sum(sizes.values()) >= info["stored_bytes"]
        assert ours_in_dev_shm(prefix, everyone) == []  # not even while it runs
        graph = holders(info["graph"])  # the compiled graph's channels
        assert info["driver"] in graph and info["actor"] in graph, graph
        process.kill()
        process.wait(timeout=30)
        assert_all_gone(prefix, everyone)
        assert holders(info["graph"]) == {}
        assert not [n for n in os.listdir("/dev/shm") if info["graph"] in n]
    finally:
        kill_all([info["driver"], *info["descendants"]])
        process.wait(timeout=30)


def segment_sizes(pid: int, prefix: str) -> dict[str, int]:
    """{segment: bytes} of the segments process pid has fds of."""
    sizes = {}
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            if target.startswith(SEGMENT_MARK + prefix):
                sizes[target] = os.stat(f"/proc/{pid}/fd/{fd}").st_size
        except OSError:
            continue
    return sizes


# -- SIGKILL of a worker holding a mapping ------------------------------------------------------


@actorflow.remote
class Keeper:
    def keep(self, refs: list) -> tuple[int, str]:
        self.value = actorflow.get(refs[0])
        with open("/proc/self/maps") as f:
            for line in f:
                fields = line.split(maxsplit=5)
                start, end = (int(x, 16) for x in fields[0].split("-"))
                if start <= self.value.ctypes.data < end:
                    return os.getpid(), fields[5].strip().removesuffix(" (deleted)")
        return os.getpid(), ""


def _stored_row(obj_hex: str) -> dict | None:
    session = context.session()

    async def rows():
        return session.store.handle_list_objects(None, None)

    found = session.loop_thread.run(rows(), timeout=10)
    return next((row for row in found if row["object_id"] == obj_hex), None)


def test_sigkill_of_a_worker_holding_a_mapping(cluster):
    ref = actorflow.put(np.full(24 * MiB // 8, 3.0))
    local = actorflow.get(ref)
    assert not local.flags.writeable
    keeper = Keeper.remote()
    pid, segment = actorflow.get(keeper.keep.remote([ref]), timeout=60)
    prefix = context.session().store.prefix
    obj_hex = ref.hex()
    assert segment.startswith(SEGMENT_MARK + prefix)
    assert pid in holders(prefix)
    poll_until(lambda: (_stored_row(obj_hex) or {}).get("readers", 0) >= 2, timeout=30)
    os.kill(pid, signal.SIGKILL)
    poll_until(lambda: not alive(pid), timeout=30, message="the actor's worker did not end")
    # The store counts the dead reader out; our own view still holds the object.
    eventually(
        lambda: (_stored_row(obj_hex) or {}).get("readers") == 1,
        30,
        lambda: f"the store still counts the dead reader: {_stored_row(obj_hex)}",
    )
    assert float(local.sum()) == 3.0 * (24 * MiB // 8)
    del local, ref
    eventually(
        lambda: not [p for p in holders(prefix) if p != os.getpid()],
        30,
        lambda: f"other processes still hold segments: {holders(prefix)}",
    )
    assert ours_in_dev_shm(prefix, [pid, os.getpid()]) == []
    actorflow.kill(keeper)


# -- SIGKILL of every process of a multi-process cluster at once --------------------------------


def test_sigkill_of_the_whole_cluster_frees_every_segment(tmp_path, descendants):
    cluster = LocalCluster(session_root=str(tmp_path))
    pids: list[int] = []
    process = None
    try:
        head = cluster.add_node(num_cpus=2)
        process, info = start_driver(str(tmp_path), cluster.address)
        prefix = info["prefix"]
        assert prefix.startswith(head["node_id"][:8])  # the driver uses its machine's node
        assert cluster.gcs is not None
        pids = [head["pid"], *descendants(head["pid"]), info["driver"], cluster.gcs["popen"].pid]
        assert head["pid"] in holders(prefix) and info["actor"] in holders(prefix)
        assert ours_in_dev_shm(prefix, pids) == []
        kill_all(pids)  # all at once, as a machine's processes are when it goes down
        assert_all_gone(prefix, pids)
    finally:
        kill_all(pids)
        if process is not None:
            process.kill()
            process.wait(timeout=30)
        cluster.shutdown()


@actorflow.remote
def make_array(nbytes: int) -> np.ndarray:
    return np.full(nbytes // 8, 5.0)


def test_sigkill_of_a_node_its_driver_lets_go(local_cluster):
    """A driver outlives its node: the fds and writable mappings it kept of the node's segments
    (for its next puts) are let go once the node is gone, so none of that memory stays."""
    head = local_cluster.add_node(num_cpus=1)
    actorflow.init(address=local_cluster.address)
    prefix = head["node_id"][:8] + ":"
    refs = [actorflow.put(np.full(8 * MiB // 8, float(i))) for i in range(3)]
    for _ in range(2):  # freed and put again: a writable mapping of a pooled segment is kept
        refs.append(actorflow.put(np.zeros(8 * MiB // 8)))
        del refs[-1]
    assert float(actorflow.get(refs[1])[0]) == 1.0
    assert float(actorflow.get(make_array.remote(8 * MiB), timeout=60)[0]) == 5.0
    workers = [p for p in holders(prefix) if p not in (os.getpid(), head["pid"])]
    assert os.getpid() in holders(prefix)
    del refs
    local_cluster.kill_node(head)
    eventually(
        lambda: not holders(prefix) and not [p for p in workers if alive(p)],
        30,
        lambda: f"segments still held (their memory allocated): {holders(prefix)}",
    )
    assert ours_in_dev_shm(prefix, [head["pid"], *workers]) == []


# -- the fd socket ------------------------------------------------------------------------------


def test_the_segment_socket_is_for_this_user_only():
    """The socket is 0600 in a 0700 directory, and a peer of another uid that reaches it anyway
    is refused (SO_PEERCRED) before it gets any fd."""
    if os.getuid() != 0:
        pytest.skip("needs root, to connect as another user")
    # Right under the temp dir: pytest's own tmp_path is inside 0700 directories.
    directory = Path(tempfile.mkdtemp(prefix="actorflow-socktest-"))
    table = segments.SegmentTable()
    table.create("n:s0", 4096)
    path = str(directory / "store.sock")
    server = segment_socket.SegmentServer(table, path)
    server.start()
    try:
        assert (os.stat(path).st_mode & 0o777) == 0o600
        assert connect_as_nobody(path) == "denied"  # the file system stops it
        os.chmod(directory, 0o777)
        os.chmod(path, 0o777)
        assert connect_as_nobody(path) == "no fd"  # the server does
        assert server.refused == 1
    finally:
        server.close()
        table.close()
        shutil.rmtree(directory, ignore_errors=True)


def connect_as_nobody(path: str) -> str:
    """Ask the server at path for segment n:s0 from a child running as uid 65534."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 3
        try:
            os.close(read_end)
            os.setgid(65534)
            os.setuid(65534)
            try:
                client = segment_socket.SegmentClient(path, "tcp://intruder")
                fd = client.open("n:s0")
                outcome = b"got fd" if fd is not None else b"none"
            except actorflow.exceptions.ActorflowError as exc:
                outcome = b"denied" if "Permission denied" in str(exc) else b"no fd"
            os.write(write_end, outcome)
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    try:
        with os.fdopen(read_end, "rb") as f:
            outcome = f.read().decode()
    finally:
        os.waitpid(pid, 0)
    return outcome
