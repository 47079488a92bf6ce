"""Typed handles: a type checker sees what remote calls return.

Demonstrates ``ObjectRef[T]``, ``ActorHandle[T]`` and typed remote functions. The program runs
as any other; the point is what ``mypy`` says about it. With actorflow's plugin in your mypy
configuration::

    [tool.mypy]
    plugins = ["actorflow.mypy_plugin"]

``mypy examples/typed_handles.py`` sees ``counter.add.remote(2)`` as an ``ObjectRef[int]``,
``await`` of it as an ``int``, checks the arguments against ``Counter.add``'s, and reports
``counter.add.remote("two")`` (uncomment it to see). Without the plugin, remote functions and
refs are still typed; handle methods are then untyped (``ObjectRef[Any]``), as in Ray.

Usage:
    python examples/typed_handles.py
"""

import asyncio

import actorflow
from actorflow import ObjectRef
from actorflow.actor import ActorHandle


@actorflow.remote
def square(x: int) -> int:
    return x * x


@actorflow.remote
class Counter:
    def __init__(self, start: int) -> None:
        self.value = start

    def add(self, by: int) -> int:
        self.value += by
        return self.value

    async def describe(self) -> str:
        return f"Counter at {self.value}"


async def total(counter: ActorHandle[Counter], steps: list[int]) -> int:
    refs: list[ObjectRef[int]] = [counter.add.remote(step) for step in steps]
    return max(await asyncio.gather(*refs))  # list[int]: max is an int


async def main() -> None:
    counter = Counter.remote(10)  # ActorHandle[Counter]
    squares: list[int] = await asyncio.gather(*[square.remote(i) for i in range(4)])
    print("squares:", squares)
    value: int = await counter.add.remote(2)
    print("await counter.add.remote(2) ->", value)
    print("total after [1, 2, 3]:", await total(counter, [1, 2, 3]))
    text: str = await counter.describe.remote()
    print("describe ->", text)
    # counter.add.remote("two")  # mypy: Argument 1 to "remote" of "ActorMethod" has
    #                            # incompatible type "str"; expected "int"


if __name__ == "__main__":
    actorflow.init()
    print("square(7) =", actorflow.get(square.remote(7)))  # int
    asyncio.run(main())
    actorflow.shutdown()
