"""Ray's ``ray.experimental.compiled_dag_ref``: what a compiled graph's execute returns."""

from actorflow.dag.compiled_dag_ref import CompiledDAGFuture, CompiledDAGRef

__all__ = ["CompiledDAGFuture", "CompiledDAGRef"]
