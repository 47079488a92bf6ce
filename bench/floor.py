"""Physical floor of this machine, measured with bare uvloop + msgpack (not actorflow).

    python -m bench.floor [--quick] [--json-out FILE]

* ``rtt``        request/response round trips per second between two processes over
                 loopback TCP, one request in flight at a time (the ceiling for any
                 "sync" call: submit, wait for the reply, repeat);
* ``pipelined``  request/response messages per second with 1,000 requests in flight
                 (the client packs the whole window into one write; the server answers
                 each received chunk with one write) -- the ceiling for "async" batches;
  ``pipelined_unbatched`` the same with one transport.write() per request;
* ``memcpy``     GB/s of ``np.copyto`` between two touched 800 MiB arrays (GB = 1e9 B),
                 the ceiling for put/get of large arrays that copy once;
  ``memcpy_gib_ms`` the time of one 1 GiB copy.

Messages are msgpack arrays shaped like a small RPC (``[0, id, "small_value", []]`` ->
``[1, id, b"ok"]``).  Without uvloop the stock asyncio loop is used and flagged.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import platform
import socket
import statistics
import sys
import time

import msgpack

WINDOW = 1000


def _loop_policy() -> str:
    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
        return f"uvloop {uvloop.__version__}"
    except ImportError:
        return "asyncio (uvloop missing!)"


# ----------------------------------------------------------------------------- server


class _Server(asyncio.Protocol):
    def connection_made(self, transport):
        self.t = transport
        self.unpacker = msgpack.Unpacker()
        transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data):
        self.unpacker.feed(data)
        pack = msgpack.packb
        out = [pack([1, msg[1], b"ok"]) for msg in self.unpacker]
        if out:
            self.t.write(b"".join(out))


def _serve(conn) -> None:
    _loop_policy()

    async def main():
        loop = asyncio.get_running_loop()
        srv = await loop.create_server(_Server, "127.0.0.1", 0)
        conn.send(srv.sockets[0].getsockname()[1])
        await loop.run_in_executor(None, conn.recv)  # parent says stop
        srv.close()

    asyncio.run(main())


# ----------------------------------------------------------------------------- client


class _Client(asyncio.Protocol):
    def __init__(self):
        self.unpacker = msgpack.Unpacker()
        self.waiting = 0
        self.fut = None

    def connection_made(self, transport):
        self.t = transport
        transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data):
        self.unpacker.feed(data)
        for _ in self.unpacker:
            self.waiting -= 1
        if self.waiting == 0 and self.fut is not None:
            self.fut.set_result(None)
            self.fut = None

    async def exchange(self, payload: bytes, n: int):
        self.waiting = n
        self.fut = asyncio.get_running_loop().create_future()
        self.t.write(payload)
        await self.fut

    async def exchange_unbatched(self, msgs: list):
        self.waiting = len(msgs)
        self.fut = asyncio.get_running_loop().create_future()
        for m in msgs:
            self.t.write(m)
        await self.fut


async def _timed_rounds(step, per_step: int, rounds: int, duration: float) -> list:
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < min(0.5, duration):  # warm-up
        await step()
    out = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        n = 0
        while time.perf_counter() - t0 < duration:
            await step()
            n += per_step
        out.append(n / (time.perf_counter() - t0))
    return out


async def _client(port: int, rounds: int, duration: float) -> dict:
    loop = asyncio.get_running_loop()
    _, proto = await loop.create_connection(_Client, "127.0.0.1", port)
    pack = msgpack.packb
    one = pack([0, 1, "small_value", []])
    window_msgs = [pack([0, i, "small_value", []]) for i in range(WINDOW)]
    window = b"".join(window_msgs)

    async def sync_step():
        await proto.exchange(one, 1)

    async def pipe_step():
        await proto.exchange(window, WINDOW)

    async def pipe_unbatched_step():
        await proto.exchange_unbatched(window_msgs)

    res = {
        "rtt": await _timed_rounds(sync_step, 1, rounds, duration),
        "pipelined": await _timed_rounds(pipe_step, WINDOW, rounds, duration),
        "pipelined_unbatched": await _timed_rounds(pipe_unbatched_step, WINDOW, rounds, duration),
    }
    proto.t.close()
    return res


def _net(rounds: int, duration: float) -> tuple[dict, str]:
    loop_name = _loop_policy()
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    server = ctx.Process(target=_serve, args=(child,), daemon=True)
    server.start()
    try:
        port = parent.recv()
        return asyncio.run(_client(port, rounds, duration)), loop_name
    finally:
        parent.send("stop")
        server.join(5)
        if server.is_alive():
            server.terminate()


# ----------------------------------------------------------------------------- memcpy


def _memcpy(reps: int) -> dict:
    import numpy as np

    n = 100 * 1024 * 1024  # 800 MiB of int64, same as the "put gigabytes" array
    src = np.ones(n, dtype=np.int64)
    dst = np.ones(n, dtype=np.int64)
    rates = []
    for _ in range(reps + 1):
        t = time.perf_counter()
        np.copyto(dst, src)
        rates.append(src.nbytes / 1e9 / (time.perf_counter() - t))
    rates = rates[1:]  # first copy warms caches / TLB
    del src, dst
    big = np.ones((1 << 30) // 8, dtype=np.float64)
    out = np.ones_like(big)
    times = []
    for _ in range(max(3, reps // 2)):
        t = time.perf_counter()
        np.copyto(out, big)
        times.append((time.perf_counter() - t) * 1e3)
    return {"memcpy": rates, "memcpy_gib_ms": times}


# ----------------------------------------------------------------------------- public


def _stat(xs: list) -> dict:
    return {
        "mean": statistics.fmean(xs),
        "std": statistics.pstdev(xs) if len(xs) > 1 else 0.0,
        "median": statistics.median(xs),
        "samples": xs,
    }


UNITS = {
    "rtt": "round trips/s",
    "pipelined": "msgs/s",
    "pipelined_unbatched": "msgs/s",
    "memcpy": "GB/s",
    "memcpy_gib_ms": "ms",
}


def measure(quick: bool = False) -> dict:
    rounds, duration = (3, 0.4) if quick else (4, 1.0)
    t0 = time.perf_counter()
    net, loop_name = _net(rounds, duration)
    mem = _memcpy(3 if quick else 6)
    figs = {k: {"unit": UNITS[k], **_stat(v)} for k, v in {**net, **mem}.items()}
    return {
        "loop": loop_name,
        "msgpack": ".".join(map(str, msgpack.version)),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "seconds": time.perf_counter() - t0,
        "figures": figs,
    }


def format_floor(floor: dict) -> str:
    lines = [f"Physical floor ({floor['loop']}, msgpack {floor['msgpack']}, {floor['cpus']} CPUs):"]
    for k, v in floor["figures"].items():
        lines.append(
            f"  {k:<20} median {v['median']:>14,.1f} {v['unit']:<14}"
            f" (mean {v['mean']:,.1f} +- {v['std']:,.1f})"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m bench.floor",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--quick", action="store_true", help="shorter rounds (~5 s)")
    ap.add_argument(
        "--json-out", help="write the floor figures here (default: bench/results/floor-latest.json)"
    )
    ap.add_argument("--quiet", action="store_true", help="print only the JSON path")
    args = ap.parse_args(argv)
    floor = measure(quick=args.quick)
    if args.json_out:
        path = args.json_out
    else:
        from . import RESULTS_DIR

        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        path = str(RESULTS_DIR / "floor-latest.json")
    with open(path, "w") as f:
        json.dump(floor, f, indent=1)
    if not args.quiet:
        print(format_floor(floor))
        print(f"written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
