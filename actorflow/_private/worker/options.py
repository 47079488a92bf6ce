"""Validation of ``@remote(...)`` and ``.options(...)`` arguments, with Ray's names and meanings.

Bad options fail where they are written, with a message that names the option.
"""

from __future__ import annotations

import inspect
from typing import Any

from actorflow._private.node.resources import normalize
from actorflow._private.runtime_env.spec import validate as validate_runtime_env
from actorflow._private.scheduling_strategies import NodeAffinitySchedulingStrategy

COMMON = {
    "num_cpus",
    "num_gpus",
    "resources",
    "memory",
    "name",
    "scheduling_strategy",
    "runtime_env",
    "accelerator_type",
    "label_selector",
}
TASK_OPTIONS = COMMON | {"num_returns", "max_retries", "retry_exceptions"}
ACTOR_OPTIONS = COMMON | {
    "max_restarts",
    "max_task_retries",
    "max_concurrency",
    "namespace",
    "lifetime",
    "get_if_exists",
    "concurrency_groups",
    "max_pending_calls",
}
METHOD_OPTIONS = {
    "num_returns",
    "concurrency_group",
    "max_task_retries",
    "retry_exceptions",
    "name",
}


def check(options: dict[str, Any], allowed: set[str], what: str) -> dict[str, Any]:
    for key in options:
        if key not in allowed:
            raise ValueError(
                f"unknown option {key!r} for {what}; valid options are: "
                f"{', '.join(sorted(allowed))}"
            )
    checked = dict(options)
    for key in ("num_cpus", "num_gpus", "memory"):
        if key in checked and checked[key] is not None:
            value = checked[key]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"{key} must be a number >= 0, got {value!r}")
    if checked.get("resources") is not None:
        resources = checked["resources"]
        if not isinstance(resources, dict):
            raise TypeError(f"resources must be a dict, got {type(resources).__name__}")
        for reserved in ("CPU", "GPU"):
            if reserved in resources:
                raise ValueError(
                    f"use num_{reserved.lower()}s=... instead of resources={{'{reserved}': ...}}"
                )
        normalize(resources)
    if "num_returns" in checked:
        value = checked["num_returns"]
        if value == "dynamic":
            raise ValueError(
                "num_returns='dynamic' is not supported; remote generators stream "
                "by default (num_returns='streaming')"
            )
        if value != "streaming" and (
            isinstance(value, bool) or not isinstance(value, int) or value < 0
        ):
            raise ValueError(f"num_returns must be an int >= 0 or 'streaming', got {value!r}")
    for key in ("max_retries", "max_restarts", "max_task_retries"):
        if key in checked:
            value = checked[key]
            if isinstance(value, bool) or not isinstance(value, int) or value < -1:
                raise ValueError(
                    f"{key} must be an int >= -1 (-1 means without limit), got {value!r}"
                )
    if "retry_exceptions" in checked:
        value = checked["retry_exceptions"]
        if not isinstance(value, bool):
            if not isinstance(value, (list, tuple)) or not all(
                isinstance(t, type) and issubclass(t, BaseException) for t in value
            ):
                raise TypeError(
                    f"retry_exceptions must be a bool or a list of exception types, got {value!r}"
                )
    if "max_concurrency" in checked:
        value = checked["max_concurrency"]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"max_concurrency must be an int >= 1, got {value!r}")
    if checked.get("runtime_env") is not None:
        checked["runtime_env"] = validate_runtime_env(checked["runtime_env"])
    strategy = checked.get("scheduling_strategy")
    if strategy not in (None, "DEFAULT", "SPREAD") and not isinstance(
        strategy, NodeAffinitySchedulingStrategy
    ):
        raise ValueError(
            f"scheduling_strategy must be 'DEFAULT', 'SPREAD' or a "
            f"NodeAffinitySchedulingStrategy, got {strategy!r}"
        )
    if "lifetime" in checked and checked["lifetime"] not in (None, "detached", "non_detached"):
        raise ValueError(f"lifetime must be 'detached' or None, got {checked['lifetime']!r}")
    return checked


def resource_request(options: dict[str, Any], default_cpus: float) -> dict[str, float]:
    cpus = options.get("num_cpus")
    request: dict[str, float] = {"CPU": default_cpus if cpus is None else cpus}
    if options.get("num_gpus"):
        request["GPU"] = options["num_gpus"]
    if options.get("memory"):
        request["memory"] = options["memory"]
    request.update(options.get("resources") or {})
    return normalize(request)


# id(signature) -> (signature, arity). Keyed by identity: hashing a Signature costs more than
# the bind it saves. Signatures live as long as their functions, so this stays small.
_arity_by_signature: dict[int, tuple[inspect.Signature, int]] = {}


def plain_arity(signature: inspect.Signature) -> int:
    """The number of arguments a call must have when the signature is only plain parameters
    (so the check is a length comparison, not a bind per call); -1 otherwise."""
    known = _arity_by_signature.get(id(signature))
    if known is not None and known[0] is signature:
        return known[1]
    params = signature.parameters.values()
    arity = (
        len(signature.parameters)
        if all(p.kind is p.POSITIONAL_OR_KEYWORD and p.default is p.empty for p in params)
        else -1
    )
    _arity_by_signature[id(signature)] = (signature, arity)
    return arity
