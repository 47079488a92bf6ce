"""The autoscaler's loop: read the cluster's pending demand from the GCS, decide (policy.py),
and have the provider launch or remove worker nodes (providers.py); again every interval."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from typing import Any

from actorflow._private.cluster import inspection
from actorflow.autoscaler.policy import Decision, Policy, decide, describe
from actorflow.autoscaler.providers import NodeProvider

logger = logging.getLogger("actorflow.autoscaler")


class Autoscaler:
    """``update()`` runs one round and returns its Decision; ``run()`` rounds until ``stop()``
    (in this thread), ``start()`` runs them in a thread of its own. address: the cluster's
    GCS, HOST:PORT (None: as ``actorflow.util.state``, this process's cluster or the latest
    session on this machine)."""

    def __init__(
        self,
        provider: NodeProvider,
        policy: Policy,
        *,
        address: str | None = None,
        interval_seconds: float = 5.0,
        on_decision: Callable[[Decision, dict[str, Any]], None] | None = None,
        health_file: str = "",
    ) -> None:
        if interval_seconds <= 0:
            raise ValueError(f"interval_seconds must be above 0, got {interval_seconds}")
        self.provider = provider
        self.policy = policy
        self.address = address
        self.interval_seconds = interval_seconds
        self.on_decision = on_decision
        self.health_file = health_file  # touched after every round, failed or not
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._warned_unfit: set[str] = set()
        self.errors = 0  # rounds that failed (the GCS was unreachable, the provider failed)

    def demand(self) -> dict[str, Any]:
        return inspection.run(
            self.address, inspection.collect_demand, timeout=max(10.0, self.interval_seconds)
        )

    def update(self) -> Decision:
        demand = self.demand()
        workers = self.provider.workers(demand.get("nodes") or [])
        decision = decide(self.policy, demand, workers)
        for shape in decision.unfit:
            if describe(shape) not in self._warned_unfit:
                self._warned_unfit.add(describe(shape))
                logger.warning(
                    "requests of %s fit no worker node of %s: not scaling for them",
                    describe(shape),
                    describe(self.policy.worker_shape),
                )
        if decision.launch:
            logger.warning(
                "launching %d worker node(s) (%d running or starting, the demand asks for %d more)",
                decision.launch,
                len(workers),
                decision.needed,
            )
            self.provider.launch(decision.launch)
        if decision.remove:
            logger.warning(
                "removing %d idle worker node(s) (idle over %g s): %s",
                len(decision.remove),
                self.policy.idle_timeout_seconds,
                ", ".join(decision.remove),
            )
            self.provider.terminate(decision.remove)
        if self.on_decision is not None:
            self.on_decision(decision, demand)
        return decision

    def run(self) -> None:
        """Rounds every interval until stop(); a failed round is logged and retried."""
        while not self._stop.is_set():
            try:
                self.update()
            except Exception as exc:
                self.errors += 1
                logger.warning("autoscaler round failed: %s", exc)
            if self.health_file:
                with open(self.health_file, "a"):
                    os.utime(self.health_file)
            self._stop.wait(self.interval_seconds)

    def start(self) -> Autoscaler:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self.run, name="actorflow-autoscaler")
            self._thread.daemon = True
            self._thread.start()
        return self

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
