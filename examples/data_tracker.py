"""One actor shared by many tasks: the DataTracker.

Demonstrates:
  * passing an actor handle into remote tasks as an ordinary argument;
  * many tasks calling methods of the same actor; the actor runs one call at
    a time, so its counter needs no lock and never loses an update;
  * tasks waiting for their own actor calls before returning, so once the
    driver has the tasks' results, every increment has been applied.
"""

import random
import time

import actorflow


@actorflow.remote
class DataTracker:
    def __init__(self):
        self._counts = 0
        self._by_worker = {}

    def increment(self, name: str) -> int:
        self._counts += 1
        self._by_worker[name] = self._by_worker.get(name, 0) + 1
        return self._counts

    def counts(self) -> int:
        return self._counts

    def by_worker(self) -> dict:
        return dict(sorted(self._by_worker.items()))


@actorflow.remote
def worker(data_tracker, worker_id: int, items: int) -> int:
    """Process ``items`` items, reporting each one to the tracker."""
    refs = []
    for _ in range(items):
        time.sleep(random.uniform(0.0, 0.02))  # "process" an item
        refs.append(data_tracker.increment.remote(f"worker-{worker_id}"))
    actorflow.get(refs)  # make sure every report has been applied
    return items


def main():
    actorflow.init(num_cpus=4)

    data_tracker = DataTracker.remote()
    num_workers, items_per_worker = 5, 20

    start = time.time()
    done = actorflow.get(
        [worker.remote(data_tracker, i, items_per_worker) for i in range(num_workers)]
    )
    print(f"{num_workers} workers processed {sum(done)} items in {time.time() - start:.2f} s")
    print(f"increments per worker: {actorflow.get(data_tracker.by_worker.remote())}")
    total = actorflow.get(data_tracker.counts.remote())
    print(f"DataTracker counts: {total}")
    assert total == num_workers * items_per_worker

    actorflow.shutdown()


if __name__ == "__main__":
    main()
