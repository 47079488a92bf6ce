"""Ray's lazy DAG API (``ray.dag``): ``f.bind(...)``, ``Cls.bind(...)``,
``actor.method.bind(...)``, ``InputNode``, ``MultiOutputNode``, ``dag.execute(...)``, and compiled
graphs (``dag.experimental_compile()``) over actor methods."""

from actorflow.dag import dag_node as _dag_node
from actorflow.dag.class_node import ClassMethodNode, ClassNode
from actorflow.dag.compiled_dag_node import CompiledDAG
from actorflow.dag.compiled_dag_ref import CompiledDAGFuture, CompiledDAGRef
from actorflow.dag.dag_node import DAGNode
from actorflow.dag.function_node import FunctionNode
from actorflow.dag.input_node import DAGInputData, InputAttributeNode, InputNode
from actorflow.dag.output_node import MultiOutputNode

_dag_node._compiler[:] = [CompiledDAG.build]

__all__ = [
    "ClassMethodNode",
    "ClassNode",
    "CompiledDAG",
    "CompiledDAGFuture",
    "CompiledDAGRef",
    "DAGInputData",
    "DAGNode",
    "FunctionNode",
    "InputAttributeNode",
    "InputNode",
    "MultiOutputNode",
]
