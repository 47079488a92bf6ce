"""A pipeline of actors as a DAG, run lazily and then compiled.

Demonstrates:
  * the lazy DAG API: ``actor.method.bind(...)`` inside ``with InputNode() as inp:``,
    ``MultiOutputNode``, ``dag.execute(...)`` returning refs;
  * compiling the same pipeline once (``experimental_compile``) and running it many times:
    each execution goes through shared-memory channels between the actors, not a task
    submission per stage;
  * several executions in flight (``_max_inflight_executions``), an error raised by one stage
    reaching only that execution's caller, and ``teardown()``.
"""

import time

import actorflow
from actorflow.dag import InputNode, MultiOutputNode


@actorflow.remote
class Tokenizer:
    def split(self, text: str) -> list:
        if not text:
            raise ValueError("empty document")
        return text.lower().split()


@actorflow.remote
class Counter:
    def count(self, words: list) -> int:
        return len(words)


@actorflow.remote
class Longest:
    def pick(self, words: list) -> str:
        return max(words, key=len)


def build(tokenizer, counter, longest):
    with InputNode() as doc:
        words = tokenizer.split.bind(doc)
        return MultiOutputNode([counter.count.bind(words), longest.pick.bind(words)])


def main() -> None:
    actorflow.init(num_cpus=4)
    actors = Tokenizer.remote(), Counter.remote(), Longest.remote()
    text = "Compiled graphs run the same pipeline again and again"

    lazy = build(*actors)
    print("lazy execute ->", actorflow.get(lazy.execute(text)))

    compiled = build(*actors).experimental_compile(_max_inflight_executions=4)
    print("compiled execute ->", actorflow.get(compiled.execute(text)))

    docs = [f"document number {i} with some words" for i in range(1000)]
    start = time.perf_counter()
    results, pending = [], []
    for d in docs:
        if len(pending) == 4:  # at most 4 in flight
            results.append(actorflow.get(pending.pop(0)))
        pending.append(compiled.execute(d))
    results += [actorflow.get(refs) for refs in pending]
    elapsed = time.perf_counter() - start
    print(f"{len(results)} documents, {sum(r[0] for r in results)} words")
    print(f"about {elapsed / len(docs) * 1e6:.0f} us per document through 3 actors")

    try:
        actorflow.get(compiled.execute(""))
    except ValueError as exc:
        print("a failing stage:", str(exc).splitlines()[-1])
    print("still usable ->", actorflow.get(compiled.execute("one more time")))

    compiled.teardown()
    print("after teardown the actors take calls:", actorflow.get(actors[1].count.remote([1, 2])))
    actorflow.shutdown()


if __name__ == "__main__":
    main()
