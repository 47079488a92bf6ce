"""Ray's lazy DAG API (``ray.dag``): ``f.bind(...)``, ``Cls.bind(...)``,
``actor.method.bind(...)``, ``InputNode``, ``MultiOutputNode``, ``dag.execute(...)``, and compiled
graphs (``dag.experimental_compile()``) over actor methods."""

from actorflow.dag.class_node import ClassMethodNode, ClassNode
from actorflow.dag.dag_node import DAGNode
from actorflow.dag.function_node import FunctionNode
from actorflow.dag.input_node import DAGInputData, InputAttributeNode, InputNode
from actorflow.dag.output_node import MultiOutputNode

__all__ = [
    "ClassMethodNode",
    "ClassNode",
    "DAGInputData",
    "DAGNode",
    "FunctionNode",
    "InputAttributeNode",
    "InputNode",
    "MultiOutputNode",
]
