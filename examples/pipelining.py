"""Pipelining, nested parallelism, and cancelling work you no longer need.

Demonstrates:
  * pipelining: ObjectRefs returned by ``generate_number`` are passed straight
    into ``sum_values``; the framework waits for them and hands the task the
    values, so the driver never blocks in between;
  * nested parallelism: a remote function that launches other remote
    functions and returns their combined results;
  * ``actorflow.wait`` to take the first results that are ready, then
    ``actorflow.cancel`` for the refs that are still pending (getting a
    cancelled ref raises ``actorflow.exceptions.TaskCancelledError``).
"""

import random
import time

import actorflow


# --- pipelining -------------------------------------------------------------
@actorflow.remote
def generate_number(s: int, limit: int, sl: float) -> int:
    """Pretend to compute for ``sl`` seconds, then return a seeded number."""
    time.sleep(sl)
    return random.Random(s).randint(0, limit)


@actorflow.remote
def sum_values(v1: int, v2: int, v3: int) -> int:
    return v1 + v2 + v3


# --- nested parallelism -----------------------------------------------------
@actorflow.remote
def square(x: int) -> int:
    time.sleep(0.1)
    return x * x


@actorflow.remote
def sum_of_squares(n: int) -> int:
    """A task that fans out into ``n`` tasks of its own and sums their results."""
    refs = [square.remote(i) for i in range(n)]
    return sum(actorflow.get(refs))


# --- wait + cancel ----------------------------------------------------------
@actorflow.remote
def search(name: str, seconds: float) -> str:
    """A search that takes ``seconds``; it works in small steps so that it
    can be interrupted when cancelled."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(0.05)
    return f"{name} found it after {seconds} s"


def main():
    actorflow.init(num_cpus=8)

    print("== pipelining ==")
    expected = [random.Random(s).randint(0, limit) for s, limit in [(1, 10), (5, 20), (7, 15)]]
    start = time.time()
    result_ref = sum_values.remote(
        generate_number.remote(1, 10, 0.1),
        generate_number.remote(5, 20, 0.2),
        generate_number.remote(7, 15, 0.3),
    )
    print(f"sum_values submitted after {time.time() - start:.3f} s (nothing waited yet)")
    total = actorflow.get(result_ref)
    print(f"generated numbers {expected}, sum_values -> {total} in {time.time() - start:.2f} s")
    assert total == sum(expected)

    print("== nested parallelism ==")
    start = time.time()
    outer_refs = [sum_of_squares.remote(n) for n in (4, 6)]
    results = actorflow.get(outer_refs)
    print(
        f"sum_of_squares(4) = {results[0]}, sum_of_squares(6) = {results[1]} "
        f"in {time.time() - start:.2f} s"
    )
    assert results == [0 + 1 + 4 + 9, 0 + 1 + 4 + 9 + 16 + 25]

    print("== wait for the first 3 searches, cancel the rest ==")
    durations = {
        "alpha": 0.3,
        "bravo": 4.0,
        "charlie": 0.1,
        "delta": 5.0,
        "echo": 6.0,
        "foxtrot": 0.2,
    }
    refs = [search.remote(name, seconds) for name, seconds in durations.items()]
    start = time.time()
    ready, not_ready = actorflow.wait(refs, num_returns=3, timeout=10.0)
    for answer in actorflow.get(ready):
        print(f"  ready: {answer}")
    print(
        f"{len(ready)} ready after {time.time() - start:.2f} s; "
        f"cancelling {len(not_ready)} pending searches"
    )
    for ref in not_ready:
        actorflow.cancel(ref)
    cancelled = 0
    for ref in not_ready:
        try:
            print(f"  finished anyway: {actorflow.get(ref)}")
        except actorflow.exceptions.TaskCancelledError:
            cancelled += 1
    print(f"cancelled searches: {cancelled}, total time {time.time() - start:.2f} s")

    actorflow.shutdown()


if __name__ == "__main__":
    main()
