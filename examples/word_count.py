"""Word count as a small MapReduce over the Zen of Python.

Demonstrates:
  * tasks with several return values: ``apply_map.options(num_returns=N)``
    makes one map call produce N ObjectRefs, one per reduce partition;
  * shuffling: each reducer receives the i-th output of every mapper, passed
    as ObjectRefs straight from the map tasks to the reduce tasks;
  * collecting the reducers' dictionaries with ``actorflow.get``.
"""

import codecs
import contextlib
import io
import re

import actorflow


def zen_of_python() -> str:
    """The text of ``import this``, without letting the import print it."""
    with contextlib.redirect_stdout(io.StringIO()):
        import this
    return codecs.decode(this.s, "rot13")


def map_function(document: str):
    """Yield ``(word, 1)`` for every word of the document."""
    for word in re.findall(r"[a-z]+(?:'[a-z]+)?", document.lower()):
        yield word, 1


@actorflow.remote
def apply_map(documents, num_partitions):
    """Map a chunk of documents and split the pairs into partitions by word."""
    map_results = [[] for _ in range(num_partitions)]
    for document in documents:
        for word, count in map_function(document):
            map_results[ord(word[0]) % num_partitions].append((word, count))
    return map_results


@actorflow.remote
def apply_reduce(*results):
    """Sum the counts of the words of one partition, from every mapper."""
    reduce_results = {}
    for pairs in results:
        for word, count in pairs:
            reduce_results[word] = reduce_results.get(word, 0) + count
    return reduce_results


def main():
    actorflow.init()

    num_partitions = 3
    corpus = zen_of_python().splitlines()
    chunk = -(-len(corpus) // num_partitions)  # ceiling division: keep every line
    chunks = [corpus[i * chunk : (i + 1) * chunk] for i in range(num_partitions)]
    print(f"{len(corpus)} lines of the Zen of Python in {num_partitions} chunks")

    # Each map call returns num_partitions refs: map_results[m][p] is mapper
    # m's output for partition p.
    map_results = [
        apply_map.options(num_returns=num_partitions).remote(documents, num_partitions)
        for documents in chunks
    ]
    # Reducer p gets partition p of every mapper.
    outputs = [
        apply_reduce.remote(*[mapper_refs[p] for mapper_refs in map_results])
        for p in range(num_partitions)
    ]

    counts = {}
    for partial in actorflow.get(outputs):
        counts.update(partial)  # partitions are disjoint: no key appears twice

    print(f"{sum(counts.values())} words, {len(counts)} distinct")
    print("most common words:")
    for word, count in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:10]:
        print(f"  {word}: {count}")

    actorflow.shutdown()


if __name__ == "__main__":
    main()
