"""What a type checker sees of actorflow's typed handles and refs (checked by test_typing.py).

Each ``# reveal:`` comment is the type mypy (with ``actorflow.mypy_plugin``) reveals on that line
(without module prefixes);
each ``# error:`` comment is an error code it must report there. Not run by pytest.
"""

from __future__ import annotations

from typing import Any, reveal_type

import actorflow
from actorflow.actor import ActorHandle


@actorflow.remote
def square(x: int) -> int:
    return x * x


@actorflow.remote
async def fetch(url: str) -> bytes:
    return url.encode()


@actorflow.remote(num_cpus=1)
def tagged(tag: str, times: int = 1) -> list[str]:
    return [tag] * times


@actorflow.remote
class Counter:
    def __init__(self) -> None:
        self.n = 0

    def increment(self, by: int = 1) -> int:
        self.n += by
        return self.n

    async def label(self) -> str:
        return f"counter at {self.n}"


def typed(counter: ActorHandle[Counter]) -> None:
    reveal_type(square.remote(3))  # reveal: ObjectRef[int]
    reveal_type(actorflow.get(square.remote(3)))  # reveal: int
    reveal_type(actorflow.get([square.remote(i) for i in range(3)]))  # reveal: list[int]
    reveal_type(fetch.remote("u"))  # reveal: ObjectRef[bytes]
    reveal_type(tagged.options(num_cpus=2).remote("a", times=2))  # reveal: ObjectRef[list[str]]
    reveal_type(Counter.remote())  # reveal: ActorHandle[Counter]
    reveal_type(Counter.options(name="c").remote())  # reveal: ActorHandle[Counter]
    reveal_type(counter.increment.remote())  # reveal: ObjectRef[int]
    reveal_type(actorflow.put("x"))  # reveal: ObjectRef[str]


async def awaited(counter: ActorHandle[Counter]) -> None:
    reveal_type(await counter.increment.remote(2))  # reveal: int
    reveal_type(await counter.label.remote())  # reveal: str
    reveal_type(await square.remote(2))  # reveal: int


def untyped(handle: Any, plain: ActorHandle[Any]) -> None:
    # Ray's untyped style keeps working: no annotations, no complaints.
    reveal_type(handle.anything.remote(1, 2))  # reveal: Any
    reveal_type(plain.anything.remote(1, 2))  # reveal: ObjectRef[Any]


def wrong(counter: ActorHandle[Counter]) -> None:
    square.remote("three")  # error: arg-type
    counter.increment.remote("two")  # error: arg-type
    counter.nope.remote()  # error: misc
    Counter.remote(5)  # error: call-arg
    total: str = actorflow.get(counter.increment.remote())  # error: assignment
    print(total)
