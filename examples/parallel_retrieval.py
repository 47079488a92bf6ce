"""Parallel data retrieval: the Ray Core walkthrough, on actorflow.

Demonstrates:
  * turning a plain function into a remote task with ``@actorflow.remote``;
  * sharing a large-ish object once with ``actorflow.put`` and passing the
    resulting ObjectRef as a task argument (tasks receive the value);
  * ``actorflow.get`` on a list of refs;
  * ``actorflow.wait(refs, num_returns=2, timeout=7.0)`` to process results
    as soon as they are ready.

Each lookup "costs" ``item / 10`` seconds of sleep, so the serial run takes
2.8 s while the parallel run takes about as long as the slowest item (0.7 s).
"""

import time

import actorflow

database = [
    "Learning",
    "Ray",
    "Flexible",
    "Distributed",
    "Python",
    "for",
    "Machine",
    "Learning",
]


def retrieve(item):
    """Serial version: look up one item of the global database."""
    time.sleep(item / 10.0)
    return item, database[item]


@actorflow.remote
def retrieve_task(item, db):
    """Remote version: the database is passed in (as an ObjectRef)."""
    time.sleep(item / 10.0)
    return item, db[item]


def print_runtime(input_data, start_time):
    print(f"Runtime: {time.time() - start_time:.2f} seconds, data:")
    print(*input_data, sep="\n")


def main():
    # The tasks mostly sleep, so let 8 of them run at once even on a
    # machine with fewer cores.
    actorflow.init(num_cpus=8)

    print("== serial ==")
    start = time.time()
    data = [retrieve(item) for item in range(8)]
    print_runtime(data, start)
    serial_time = time.time() - start

    # Put the database into the object store once; every task gets the ref.
    db_object_ref = actorflow.put(database)

    print("== parallel (actorflow.get) ==")
    start = time.time()
    object_references = [retrieve_task.remote(item, db_object_ref) for item in range(8)]
    data = actorflow.get(object_references)
    print_runtime(data, start)
    parallel_time = time.time() - start
    assert data == [(i, database[i]) for i in range(8)]

    print("== parallel (actorflow.wait, two at a time) ==")
    start = time.time()
    object_references = [retrieve_task.remote(item, db_object_ref) for item in range(8)]
    all_data = []
    while len(object_references) > 0:
        finished, object_references = actorflow.wait(object_references, num_returns=2, timeout=7.0)
        data = actorflow.get(finished)
        print_runtime(data, start)
        all_data.extend(data)
    wait_time = time.time() - start
    print("== all results ==")
    print_runtime(all_data, start)
    assert sorted(all_data) == [(i, database[i]) for i in range(8)]

    # The first parallel run may also pay for starting workers; report the
    # speed-up of the faster of the two parallel runs.
    best_parallel = min(parallel_time, wait_time)
    print(
        f"serial: {serial_time:.2f} s, parallel: {parallel_time:.2f} s (get), "
        f"{wait_time:.2f} s (wait loop)"
    )
    print(f"parallel speed-up: {serial_time / best_parallel:.1f}x")

    actorflow.shutdown()


if __name__ == "__main__":
    main()
