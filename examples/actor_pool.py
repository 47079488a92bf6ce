"""Spreading work over a fixed set of actors with ``actorflow.util.ActorPool``.

Demonstrates:
  * ``pool.map(fn, values)``: results in the order of the inputs;
  * ``pool.map_unordered(fn, values)``: results as soon as they are ready;
  * ``pool.submit(fn, value)`` / ``pool.has_next()`` / ``pool.get_next()``:
    submitting work item by item and collecting results in submission order.

``fn`` is called as ``fn(actor, value)`` and must return an ObjectRef, e.g.
``lambda actor, value: actor.square.remote(value)``.  Each actor works on one
item at a time; the pool hands the next item to whichever actor is free.
"""

import time

import actorflow
from actorflow.util import ActorPool


@actorflow.remote
class Worker:
    def __init__(self, name: str):
        self.name = name
        self.processed = 0

    def square(self, x: int) -> int:
        time.sleep(0.05)
        self.processed += 1
        return x * x

    def slow_square(self, x: int) -> tuple:
        """Larger inputs finish sooner, so completion order differs from input order."""
        time.sleep(0.05 * (8 - x))
        self.processed += 1
        return x, x * x, self.name

    def stats(self) -> tuple:
        return self.name, self.processed


def main():
    actorflow.init(num_cpus=4)

    workers = [Worker.remote(f"worker-{i}") for i in range(4)]
    pool = ActorPool(workers)

    print("== pool.map (ordered) ==")
    squares = list(pool.map(lambda actor, v: actor.square.remote(v), range(10)))
    print(f"squares: {squares}")
    assert squares == [v * v for v in range(10)]

    print("== pool.map_unordered (as completed) ==")
    start = time.time()
    for x, sq, name in pool.map_unordered(lambda actor, v: actor.slow_square.remote(v), range(8)):
        print(f"  {x}^2 = {sq:2d} from {name} at {time.time() - start:.2f} s")

    print("== submit / get_next ==")
    for v in [3, 1, 4, 1, 5, 9, 2, 6]:
        pool.submit(lambda actor, v: actor.square.remote(v), v)
    results = []
    while pool.has_next():
        results.append(pool.get_next())
    print(f"submitted [3, 1, 4, 1, 5, 9, 2, 6] -> {results}")
    print(f"sum of submitted squares: {sum(results)}")

    stats = actorflow.get([w.stats.remote() for w in workers])
    for name, processed in stats:
        print(f"  {name} processed {processed} items")
    print(f"total items processed: {sum(p for _, p in stats)}")

    actorflow.shutdown()


if __name__ == "__main__":
    main()
