"""Autoscaling: turn the cluster's pending demand into worker nodes, and remove idle ones.

```python
from actorflow.autoscaler import Autoscaler, LocalProvider, Policy

provider = LocalProvider("127.0.0.1:6380", num_cpus=2)
scaler = Autoscaler(provider, Policy({"CPU": 2}, max_workers=4, idle_timeout_seconds=60))
scaler.start()  # a thread: a round every interval_seconds (default 5)
...
scaler.stop(); provider.close()
```

The GCS sums the demand (``actorflow.util.state.cluster_demand``: resource shapes of the lease
requests queued for lack of resources, of pending actors, of infeasible requests); the policy
(``policy.py``) packs it into the free resources of the nodes and of new worker nodes; the
provider (``providers.py``: ``LocalProvider``, ``KubernetesProvider``) starts them. Idle worker
nodes (no lease, queued request, actor, kept worker or primary object copy) are drained and
removed after ``idle_timeout_seconds``. ``python -m actorflow.autoscaler --help`` runs the loop as
a process (the Kubernetes manifests do).
"""

from actorflow.autoscaler.loop import Autoscaler
from actorflow.autoscaler.policy import Decision, Policy, WorkerState, decide
from actorflow.autoscaler.providers import KubernetesProvider, LocalProvider, NodeProvider

__all__ = [
    "Autoscaler",
    "Decision",
    "KubernetesProvider",
    "LocalProvider",
    "NodeProvider",
    "Policy",
    "WorkerState",
    "decide",
]
