"""Wall and CPU time per operation on the hot paths: ``python -m bench.hot_paths``.

Companion of ``bench.cpu_per_call`` (which covers sync actor calls and sync tasks). On an
embedded actorflow cluster, one operation at a time, it measures:

  task_sync      get(f.remote()), one at a time                           (1 op = 1 task)
  task_batch     1,000 f.remote() then one get() of the list              (1 op = 1 task)
  get_small      get() of a driver-owned inline object made by put(0)
  get_large      get() of a 10 MB numpy array in shared memory (mapped once, then views)
  get_large_new  get() of a freshly put 10 MB array: put + first get (maps the segment);
                 subtract put_large to get the cost of a first get
  put_small      put(0) (the ref is dropped right away, as in Ray's "put calls")
  put_large      put() of a 10 MB numpy array (the ref is dropped right away: the object is
                 freed and its segment returns to the store's pool)

For each operation: ``--runs`` timed runs of ``--seconds`` each (after a warm-up), and for each
run wall time per op and CPU time per op (user + system, from /proc, clock-tick resolution) of:
the driver's user thread (the caller), the driver's runtime loop thread (in the embedded cluster
it hosts the owner side, the GCS, the raylet and the object store), other driver threads, the
worker processes' main threads (they run the functions) and their loop threads. Medians of the
runs are printed, plus ``foreign`` = cores used by processes outside this tree (noise alarm).

``--profile DIR`` then runs each operation once more under ``py-spy record --native`` (sampling,
so Python code is not inflated as under yappi) on the driver and every worker, saves the raw
collapsed stacks in DIR and prints, per thread, the share of samples by category (the innermost
frame that matches a rule decides: syscalls, memcpy, serialisation, framing/msgpack, ...) and
the actorflow functions with the largest inclusive share. ``python -m bench.hot_paths --summarize
DIR`` re-prints that from saved files.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable

from bench.procinfo import descendants

TICK = os.sysconf("SC_CLK_TCK")
BATCH = 1000
LARGE_BYTES = 10 * 1024 * 1024

OPS = {
    "task_sync": "get(f.remote()), one at a time",
    "task_batch": "1,000 f.remote() then get() of the list (per task)",
    "get_small": "get() of a driver-owned put(0)",
    "get_large": "get() of a 10 MB array in shared memory (already mapped)",
    "get_large_new": "put + first get() of a 10 MB array",
    "put_small": "put(0)",
    "put_large": "put() of a 10 MB array",
}


# -- CPU accounting from /proc ---------------------------------------------------------------


def _ticks(path: str) -> tuple[int, int]:
    """(user + system, system) ticks of a process or thread."""
    try:
        with open(path) as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0, 0
    return int(fields[11]) + int(fields[12]), int(fields[12])


def _threads(pid: int) -> list[int]:
    try:
        return [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    except OSError:
        return []


def _system_busy_ticks() -> int:
    with open("/proc/stat") as f:
        vals = [int(x) for x in f.readline().split()[1:]]
    return sum(vals) - vals[3] - (vals[4] if len(vals) > 4 else 0)


def snapshot(roles: dict[int, str]) -> dict[str, int]:
    """Ticks per role. roles maps driver thread ids to names; workers are found afresh."""
    me = os.getpid()
    out: dict[str, int] = defaultdict(int)
    for tid in _threads(me):
        both, system = _ticks(f"/proc/{me}/task/{tid}/stat")
        out[roles.get(tid, "driver other")] += both
        out["_kernel"] += system
    for pid in descendants(me):
        for tid in _threads(pid):
            role = "worker main" if tid == pid else "worker loop+other"
            both, system = _ticks(f"/proc/{pid}/task/{tid}/stat")
            out[role] += both
            out["_kernel"] += system
    out["_system"] = _system_busy_ticks()
    return out


ROLES = [
    "caller (user thread)",
    "driver loop (owner+raylet+store)",
    "driver other",
    "worker main",
    "worker loop+other",
]


# -- the operations -------------------------------------------------------------------------


def build(actorflow, np) -> tuple[dict[str, tuple[Callable[[], None], int]], list]:
    @actorflow.remote
    def f() -> int:
        return 1

    small_ref = actorflow.put(0)
    array = np.ones(LARGE_BYTES // 8)
    large_ref = actorflow.put(array)
    get, put = actorflow.get, actorflow.put
    ops = {
        "task_sync": (lambda: get(f.remote()), 1),
        "task_batch": (lambda: get([f.remote() for _ in range(BATCH)]), BATCH),
        "get_small": (lambda: get(small_ref), 1),
        "get_large": (lambda: get(large_ref), 1),
        "get_large_new": (lambda: get(put(array)), 1),
        "put_small": (lambda: put(0), 1),
        "put_large": (lambda: put(array), 1),
    }
    return ops, [small_ref, large_ref, array]


def timed(
    step: Callable[[], None], per_step: int, seconds: float, roles: dict[int, str]
) -> dict[str, float]:
    s0, start = snapshot(roles), time.perf_counter()
    n = 0
    while time.perf_counter() - start < seconds:
        step()
        n += per_step
    elapsed = time.perf_counter() - start
    s1 = snapshot(roles)
    row = {"wall_us": elapsed / n * 1e6, "ops_per_s": n / elapsed}
    ours = 0
    for role in ROLES:
        ticks = s1.get(role, 0) - s0.get(role, 0)
        ours += ticks
        row[role] = ticks / TICK / n * 1e6
    row["kernel"] = (s1["_kernel"] - s0["_kernel"]) / TICK / n * 1e6
    row["foreign_cores"] = max(0, s1["_system"] - s0["_system"] - ours) / TICK / elapsed
    return row


def measure(args: argparse.Namespace) -> None:
    import numpy as np

    import actorflow

    actorflow.init(num_cpus=2)
    roles = {threading.get_native_id(): ROLES[0]}
    for t in threading.enumerate():
        if t.name == "actorflow-runtime":
            roles[t.native_id] = ROLES[1]
    ops, _keep = build(actorflow, np)
    chosen = [k for k in ops if not args.ops or k in args.ops.split(",")]
    results = {}
    print(
        f"median of {args.runs} runs x {args.seconds} s (of the runs with foreign < 0.3 cores "
        f"if at least half are); CPU in us per op, 'of it sys' = kernel time of all of them; "
        f"foreign = cores used outside this process tree"
    )
    header = [
        "op",
        "ops/s",
        "wall us",
        "caller",
        "drv loop",
        "drv other",
        "wkr main",
        "wkr loop",
        "sum cpu",
        "of it sys",
        "foreign",
    ]
    print("  ".join(f"{h:>9}" if i else f"{h:<14}" for i, h in enumerate(header)))
    for key in chosen:
        step, per_step = ops[key]
        warm_until = time.perf_counter() + args.warmup
        while time.perf_counter() < warm_until:
            step()
        runs = [timed(step, per_step, args.seconds, roles) for _ in range(args.runs)]
        clean = [r for r in runs if r["foreign_cores"] < 0.3]
        used = clean if len(clean) >= max(2, len(runs) // 2) else runs
        med = {k: statistics.median(r[k] for r in used) for k in runs[0]}
        med["runs_used"] = len(used)
        results[key] = {"median": med, "runs": runs}
        cpu = [med[r] for r in ROLES]
        cells = [
            f"{med['ops_per_s']:9,.0f}",
            f"{med['wall_us']:9.1f}",
            *(f"{c:9.1f}" for c in cpu),
            f"{sum(cpu):9.1f}",
            f"{med['kernel']:9.1f}",
            f"{med['foreign_cores']:9.2f}",
        ]
        print(f"{key:<14}  " + "  ".join(cells), flush=True)
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(results, f, indent=1)
    if args.profile:
        profile(args, ops, chosen, roles)
    actorflow.shutdown()


# -- py-spy profiles and their summary -------------------------------------------------------


def _pyspy() -> str:
    found = shutil.which("py-spy") or os.path.join(os.path.dirname(sys.executable), "py-spy")
    if not os.path.exists(found):
        raise SystemExit("py-spy not found (pip install py-spy)")
    return found


def profile(args: argparse.Namespace, ops: dict, chosen: list[str], roles: dict[int, str]) -> None:
    os.makedirs(args.profile, exist_ok=True)
    with open(os.path.join(args.profile, "roles.json"), "w") as f:
        json.dump({str(k): v for k, v in roles.items()}, f)
    for key in chosen:
        step, _per_step = ops[key]
        for _ in range(20):
            step()
        procs = []
        for pid in [os.getpid(), *descendants(os.getpid())]:
            out = os.path.join(
                args.profile, f"{key}.{'driver' if pid == os.getpid() else 'worker'}.{pid}.txt"
            )
            procs.append(
                subprocess.Popen(
                    [
                        _pyspy(),
                        "record",
                        "--pid",
                        str(pid),
                        "--rate",
                        str(args.rate),
                        "--duration",
                        str(int(args.profile_seconds)),
                        "--format",
                        "raw",
                        "--output",
                        out,
                        "--threads",
                        "--native",
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        time.sleep(0.5)
        end = time.perf_counter() + args.profile_seconds - 0.5
        while time.perf_counter() < end:
            step()
        for proc in procs:
            proc.wait()
    summarize(args.profile)


_SYSCALLS = {
    "send",
    "sendto",
    "sendmsg",
    "recv",
    "recvfrom",
    "recvmsg",
    "write",
    "writev",
    "read",
    "readv",
    "epoll_wait",
    "epoll_pwait",
    "epoll_ctl",
    "mmap",
    "mmap64",
    "munmap",
    "madvise",
    "pwrite",
    "pwrite64",
    "ftruncate",
    "ftruncate64",
    "open",
    "open64",
    "openat",
    "openat64",
    "__open64",
    "close",
    "__close",
    "fstat",
    "__fxstat64",
    "fstat64",
    "unlink",
    "getpid",
    "syscall",
    "futex",
    "sched_yield",
    "clock_gettime",
    "__GI___clock_gettime",
    "sem_post",
    "sem_wait",
    "sem_timedwait",
    "sem_clockwait",
    "pthread_cond_signal",
    "pthread_cond_timedwait",
    "__libc_write",
    "__libc_read",
    "__libc_send",
    "__libc_recv",
    "__write",
    "__read",
    "__send",
    "__recv",
    "__mmap",
    "__munmap",
    "__pwrite64",
    "__ftruncate64",
    "__futex_abstimed_wait_common",
    "__lll_lock_wake",
    "__lll_lock_wait",
    "do_futex_wait",
    "__new_sem_post",
    "stat",
    "__GI___libc_write",
    "__GI___libc_read",
    "__libc_pwrite64",
    "__libc_open64",
    "statx",
    "__fstatat64",
    "fstatat64",
    "__futex_abstimed_wait_cancelable64",
    "accept4",
    "shutdown",
    "__GI___mmap64",
    "__GI___munmap",
}

# (substring of a frame, category), innermost matching frame wins. Native frames first.
_RULES = [
    ("mmap_ass_subscript", "memcpy/memset"),
    ("os_pwrite", "syscall pwrite"),
    ("memmove", "memcpy/memset"),
    ("memcpy", "memcpy/memset"),
    ("memset", "memcpy/memset"),
    ("_cmsgpack", "framing/msgpack"),
    ("msgpack", "framing/msgpack"),
    ("transports/framing.py", "framing/msgpack"),
    ("cloudpickle", "serialisation"),
    ("_pickle.c", "serialisation"),
    ("pickle.py", "serialisation"),
    ("_private/serialization.py", "serialisation"),
    ("(_pickle", "serialisation"),
    ("pickle", "serialisation"),
    ("mmapmodule", "shared memory (mmap, shm files)"),
    ("_private/node/shm.py", "shared memory (mmap, shm files)"),
    ("_private/worker/shared_objects.py", "shared memory (mmap, shm files)"),
    ("_private/node/object_store.py", "object store actor"),
    ("_private/node/store_state.py", "object store actor"),
    ("_private/ownership/", "ownership (object table, refs)"),
    ("_private/worker/task_submitter.py", "scheduling/lease (task submitter)"),
    ("_private/node/raylet.py", "scheduling/lease (raylet)"),
    ("_private/node/worker_pool.py", "scheduling/lease (raylet)"),
    ("_private/node/resources.py", "scheduling/lease (raylet)"),
    ("_private/worker/executor.py", "task executor (worker)"),
    ("_private/runtime.py", "runtime dispatch (request/reply)"),
    ("transports/", "transport (connection/stream)"),
    ("threading.py", "thread hops (wake-ups, locks)"),
    ("concurrent/futures", "thread hops (wake-ups, locks)"),
    ("_threadmodule", "thread hops (wake-ups, locks)"),
    ("thread_pthread", "thread hops (wake-ups, locks)"),
    ("lock_PyThread", "thread hops (wake-ups, locks)"),
    ("PyThread_", "thread hops (wake-ups, locks)"),
    ("take_gil", "GIL hand-over"),
    ("drop_gil", "GIL hand-over"),
    ("_private/worker/core_worker.py", "core worker (owner bookkeeping, get/put)"),
    ("_private/ids.py", "ids"),
    ("_private/worker/streams.py", "core worker (owner bookkeeping, get/put)"),
    ("object_ref.py", "API (refs, remote, get/put)"),
    ("remote_function.py", "API (refs, remote, get/put)"),
    ("actorflow/api.py", "API (refs, remote, get/put)"),
    ("_private/context.py", "API (refs, remote, get/put)"),
    ("numpy", "numpy"),
    ("multiarray", "numpy"),
    ("asyncio/", "event loop (asyncio/uvloop)"),
    ("uvloop", "event loop (asyncio/uvloop)"),
    ("gc_collect", "GC"),
    ("gcmodule", "GC"),
    ("gc.c", "GC"),
    ("bench/hot_paths.py", "benchmark loop"),
    ("bench/procinfo.py", "benchmark loop"),
]


def _frame_name(frame: str) -> str:
    return frame.split(" (", 1)[0]


_WAIT_PARENTS = (
    "PyThread_acquire_lock_timed",
    "lock_PyThread_acquire_lock",
    "_queue_SimpleQueue_get",
    "uv__io_poll",
    "select_select",
    "os_read_impl",
    "os_waitpid",
)
IDLE, GIL = "idle (blocked waiting)", "waiting for the GIL"


def categorize(frames: list[str]) -> str:
    """The category of one sample's stack (frames root first)."""
    leaf = frames[-1]
    native = [f for f in frames if ".py:" not in f and "<frozen" not in f]
    inner = next((f for f in reversed(frames) if "(libc" not in f), "")
    if "epoll_pwait" in leaf or "epoll_wait" in leaf or any(w in inner for w in _WAIT_PARENTS):
        return IDLE
    if "pthread_cond_timedwait" in " ".join(frames[-2:]) or "pthread_cond_wait" in leaf:
        return GIL  # a thread that released the GIL (a C call, a uvloop callback) takes it back
    if any("os_urandom" in f for f in native):
        return "ids (os.urandom)"
    if any(
        "uv__async_send" in f or "uv__async_io" in f or "call_soon_threadsafe" in f for f in native
    ):
        return "thread hops (wake-ups, locks)"
    if "(libc" in leaf or "vdso" in leaf:
        name = _frame_name(leaf)
        if name in _SYSCALLS or name.startswith("__GI_") or name.startswith("syscall"):
            return f"syscall {name.lstrip('_').replace('GI_', '').replace('libc_', '')}"
    for frame in reversed(frames):
        for needle, category in _RULES:
            if needle in frame:
                if (
                    category == "memcpy/memset"
                    and "(libc" not in frame
                    and "mmap_ass_subscript" not in frame
                ):
                    continue
                return category
    return "other"


def _is_ours(frame: str) -> bool:
    return ("actorflow/" in frame or "transports/" in frame) and ".py:" in frame


def _load(path: str) -> list[tuple[list[str], int]]:
    stacks = []
    with open(path) as f:
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            stack, _, count = line.rpartition(" ")
            stacks.append((stack.split(";"), int(count)))
    return stacks


def summarize(directory: str, top: int = 12) -> None:
    roles_path = os.path.join(directory, "roles.json")
    roles = json.load(open(roles_path)) if os.path.exists(roles_path) else {}
    files = sorted(f for f in os.listdir(directory) if f.endswith(".txt"))
    by_op: dict[str, list[str]] = defaultdict(list)
    for name in files:
        by_op[name.split(".")[0]].append(name)
    for op, names in by_op.items():
        threads: dict[str, list[tuple[list[str], int]]] = defaultdict(list)
        for name in names:
            kind = name.split(".")[1]
            pid = name.split(".")[2]
            for frames, count in _load(os.path.join(directory, name)):
                tid = (
                    frames[0].split("(", 1)[-1].split(")", 1)[0]
                    if frames[0].startswith("thread")
                    else "?"
                )
                if kind == "driver":
                    role = {
                        "caller (user thread)": "caller",
                        "driver loop (owner+raylet+store)": "driver loop",
                    }.get(roles.get(tid, ""), "driver other")
                else:
                    role = "worker main" if tid == pid else "worker loop+other"
                threads[role].append((frames[1:], count))
        print(f"\n== {op}: {OPS.get(op, '')}")
        for role in ["caller", "driver loop", "driver other", "worker main", "worker loop+other"]:
            stacks = threads.get(role)
            if not stacks:
                continue
            cats: Counter = Counter()
            incl: Counter = Counter()
            lines: Counter = Counter()
            for frames, count in stacks:
                category = categorize(frames)
                cats[category] += count
                if category in (IDLE, GIL):
                    continue
                leaf_py = next((f for f in reversed(frames) if ".py:" in f), "")
                lines[leaf_py.replace("actorflow/_private/", "")] += count
                seen = set()
                for frame in frames:
                    if _is_ours(frame):
                        fn = (
                            frame.split(" (", 1)[0]
                            + " ("
                            + frame.split(" (", 1)[1].split("/")[-1].split(":")[0]
                            + ")"
                        )
                        if fn not in seen:
                            seen.add(fn)
                            incl[fn] += count
            idle, gil = cats.pop(IDLE, 0), cats.pop(GIL, 0)
            total = sum(cats.values())
            if total < 20:
                continue
            shares = ", ".join(
                f"{c} {n / total:.0%}" for c, n in cats.most_common() if n / total >= 0.02
            )
            print(
                f"  [{role}] {total} working samples ({idle} idle, GIL wait {gil} = "
                f"{gil / total:.0%} of working): {shares}"
            )
            fns = ", ".join(f"{fn} {n / total:.0%}" for fn, n in incl.most_common(top))
            print(f"      inclusive: {fns}")
            hot = ", ".join(f"{ln} {n / total:.0%}" for ln, n in lines.most_common(6))
            print(f"      self, by line (innermost Python frame): {hot}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", default="", help=f"comma-separated subset of {', '.join(OPS)}")
    parser.add_argument("--seconds", type=float, default=3.0, help="per timed run")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--json-out", default="")
    parser.add_argument(
        "--profile",
        default="",
        metavar="DIR",
        help="also record py-spy profiles into DIR and summarize them",
    )
    parser.add_argument("--profile-seconds", type=float, default=8.0)
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples/s")
    parser.add_argument(
        "--summarize", default="", metavar="DIR", help="only re-print the summary of saved profiles"
    )
    args = parser.parse_args()
    if args.summarize:
        summarize(args.summarize)
        return
    measure(args)


if __name__ == "__main__":
    main()
