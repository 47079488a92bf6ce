"""The lazy DAG API (actorflow.dag, Ray's ray.dag) through the public API."""

from __future__ import annotations

import cloudpickle
import pytest

import actorflow
from actorflow import exceptions
from actorflow.dag import (
    ClassMethodNode,
    ClassNode,
    FunctionNode,
    InputAttributeNode,
    InputNode,
    MultiOutputNode,
)

pytestmark = pytest.mark.timeout(60)


@actorflow.remote
def add(x, inc=1):
    return x + inc


@actorflow.remote
def pair(a, b):
    return [a, b]


@actorflow.remote
def total(items):
    return sum(actorflow.get(items))


@actorflow.remote
class Acc:
    def __init__(self, start):
        self.value = start

    def inc(self, x):
        self.value += x
        return self.value

    def get(self):
        return self.value


def test_function_nodes_chain_and_reuse(cluster):
    a = add.bind(1, inc=2)
    assert isinstance(a, FunctionNode)
    assert actorflow.get(a.execute()) == 3
    b = add.bind(a, inc=3)
    c = add.bind(b, inc=a)  # a is one call, read twice
    assert actorflow.get(c.execute()) == 9
    assert actorflow.get(c.execute()) == 9  # built once, executed again


def test_input_node_single_indexed_and_keyword(cluster):
    with InputNode() as inp:
        dag = pair.bind(add.bind(inp[0]), add.bind(inp.x))
    assert isinstance(inp[0], InputAttributeNode)
    assert actorflow.get(dag.execute(1, x=10)) == [2, 11]
    with InputNode() as inp:
        dag = MultiOutputNode([add.bind(inp["a"]), add.bind(inp["b"])])
    refs = dag.execute({"a": 1, "b": 5})
    assert actorflow.get(refs) == [2, 6]
    with InputNode() as inp:
        dag = add.bind(inp)
    assert [actorflow.get(dag.execute(i)) for i in range(3)] == [1, 2, 3]


def test_input_node_misuse_gets_rays_errors(cluster):
    dag = add.bind(InputNode())
    with pytest.raises(AssertionError, match="context manager"):
        dag.execute(1)
    with pytest.raises(ValueError, match="should not take any args"):
        InputNode(1)
    with InputNode() as inp, pytest.raises(AssertionError, match="int index or str"):
        inp[(1, 2)]
    with InputNode() as first:
        a = add.bind(first)
    with InputNode() as second:
        dag = pair.bind(a, add.bind(second))
    with pytest.raises(exceptions.DAGInputError, match="one unique InputNode"):
        dag.execute(1)


def test_class_nodes_make_an_actor_per_execution_and_keep_call_order(cluster):
    a1 = Acc.bind(10)
    assert isinstance(a1, ClassNode)
    val = a1.get.bind()
    assert isinstance(val, ClassMethodNode)
    assert actorflow.get(val.execute()) == 10
    a2 = Acc.bind(10)
    a1.inc.bind(2)
    a1.inc.bind(4)
    a2.inc.bind(6)
    dag = add.bind(a1.get.bind(), inc=a2.get.bind())
    assert actorflow.get(dag.execute()) == 32
    assert actorflow.get(dag.execute()) == 32  # fresh actors each time
    handle = Acc.bind(3).execute()
    assert actorflow.get(handle.get.remote()) == 3


def test_class_node_checks_methods_and_input(cluster):
    with pytest.raises(AttributeError, match="no method 'nope'"):
        Acc.bind(1).nope  # noqa: B018
    with InputNode() as inp, pytest.raises(ValueError, match="constructor"):
        Acc.bind(inp)
    with pytest.raises(TypeError, match="add"):
        add.bind(1, 2, 3)


def test_methods_of_a_live_actor(cluster):
    acc = Acc.remote(0)
    with InputNode() as inp:
        dag = MultiOutputNode([acc.inc.bind(inp)])
    assert actorflow.get(dag.execute(1)) == [1]
    assert actorflow.get(dag.execute(2)) == [3]
    assert actorflow.get(acc.get.remote()) == 3
    with pytest.raises(AttributeError, match="bind"):
        dag.bind  # noqa: B018
    with pytest.raises(AttributeError, match="execute"):
        dag.remote  # noqa: B018


def test_refs_plain_values_and_nested_nodes(cluster):
    ref = actorflow.put(5)
    assert actorflow.get(add.bind(ref, inc=1).execute()) == 6
    # Nodes inside a list arrive as refs (as in Ray), top-level ones as values.
    dag = total.bind([add.bind(1), add.bind(2), add.bind(3)])
    assert actorflow.get(dag.execute()) == 9


def test_options_on_bound_nodes(cluster):
    node = add.options(num_cpus=0.5).bind(1)
    assert actorflow.get(node.execute()) == 2
    with_opts = add.bind(2).options(num_cpus=0.25)
    assert with_opts.get_options() == {"num_cpus": 0.25}
    assert actorflow.get(with_opts.execute()) == 3
    acc = Acc.remote(0)
    assert actorflow.get(acc.inc.options(name="x").bind(4).execute()) == 4
    assert actorflow.get(Acc.bind(1).options(max_concurrency=2).get.bind().execute()) == 1


def test_dags_pickle_and_run_again(cluster):
    with InputNode() as inp:
        dag = MultiOutputNode([add.bind(inp), Acc.bind(1).inc.bind(inp)])
    again = cloudpickle.loads(cloudpickle.dumps(dag))
    assert actorflow.get(again.execute(2)) == [3, 3]
    assert actorflow.get(dag.execute(3)) == [4, 4]


def test_ray_module_path_names(cluster):
    import actorflow.dag.input_node as input_node
    import actorflow.dag.output_node as output_node

    assert input_node.InputNode is InputNode
    assert output_node.MultiOutputNode is MultiOutputNode
    assert actorflow.dag.InputNode is InputNode
