"""The Counter actor: state that lives in one place, used from sync and async code.

Demonstrates:
  * ``@actorflow.remote`` on a class, creating an actor with ``.remote()``;
  * calling its methods with ``.remote()`` and ``actorflow.get``; calls from
    one caller run in submission order;
  * awaiting actor method calls from an ``async def`` function run with
    ``asyncio.run`` (ObjectRefs are awaitable), including ``asyncio.gather``.
"""

import asyncio

import actorflow


@actorflow.remote
class Counter:
    def __init__(self):
        self.value = 0

    def increment(self):
        self.value += 1
        return self.value

    def get_counter(self):
        return self.value


async def async_main(counter):
    # A single call: await the ObjectRef directly.
    value = await counter.increment.remote()
    print(f"async: await counter.increment.remote() -> {value}")

    # Many concurrent calls: gather the refs.
    values = await asyncio.gather(*[counter.increment.remote() for _ in range(5)])
    print(f"async: gathered increments -> {sorted(values)}")

    final = await counter.get_counter.remote()
    print(f"async: counter value -> {final}")
    return final


def main():
    actorflow.init()

    counter = Counter.remote()

    # Synchronous use: get the results of individual calls.
    print(f"sync: increment -> {actorflow.get(counter.increment.remote())}")
    refs = [counter.increment.remote() for _ in range(4)]
    print(f"sync: four more increments -> {actorflow.get(refs)}")
    print(f"sync: counter value -> {actorflow.get(counter.get_counter.remote())}")

    # Asynchronous use of the same actor from an event loop.
    final = asyncio.run(async_main(counter))
    print(f"final counter value: {final}")
    assert final == 11

    actorflow.shutdown()


if __name__ == "__main__":
    main()
