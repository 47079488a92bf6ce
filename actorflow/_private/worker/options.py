"""Validation of ``@remote(...)`` and ``.options(...)`` arguments, with Ray's names and meanings.

Bad options fail where they are written, with a message that names the option.
"""

from __future__ import annotations

import inspect
import warnings
from typing import Any

from actorflow._private.node.resources import normalize
from actorflow._private.runtime_env.spec import validate as validate_runtime_env
from actorflow._private.scheduling_strategies import (
    NodeAffinitySchedulingStrategy,
    PlacementGroupSchedulingStrategy,
)

# Ray's older way to name a placement group (deprecated there too): turned into a
# PlacementGroupSchedulingStrategy.
GROUP_OPTIONS = (
    "placement_group",
    "placement_group_bundle_index",
    "placement_group_capture_child_tasks",
)
COMMON = {
    *GROUP_OPTIONS,
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
    # actorflow's own: the actor dies with the actor that created it, not with its process, so
    # it outlives that actor's restarts (a supervisor's children: supervision/).
    "_survive_owner_restart",
}
METHOD_OPTIONS = {
    "num_returns",
    "concurrency_group",
    "max_task_retries",
    "retry_exceptions",
    "name",
}

# Options Ray accepts that change nothing here (listed on the README's compatibility page):
# labels and tensor transports are Ray features we do not have, object_store_memory reserves
# nothing in Ray either, and generator back-pressure knobs tune Ray's own streaming protocol.
# (enable_task_events, listed with them, does turn a call's task events off.)
ACCEPTED_AND_IGNORED = {
    "enable_task_events",
    "_labels",
    "_metadata",
    "object_store_memory",
    "fallback_strategy",
    "_generator_backpressure_num_objects",
    "_num_objects_per_yield",
}
TASK_OPTIONS |= ACCEPTED_AND_IGNORED | {"max_calls"}
ACTOR_OPTIONS |= ACCEPTED_AND_IGNORED | {
    "allow_out_of_order_execution",
    "enable_tensor_transport",
    "_actor_generator_backpressure_num_objects",
    "_mesh_member",  # set by actorflow.mesh: the member's rank and the mesh's shape
}
METHOD_OPTIONS |= {
    "enable_task_events",
    "tensor_transport",
    "_generator_backpressure_num_objects",
    "_num_objects_per_yield",
}

_NONE = type(None)
# The type each option must have, as Ray checks them (a TypeError names the option).
_TYPES: dict[str, tuple[type, ...]] = {
    "name": (str, _NONE),
    "namespace": (str, _NONE),
    "accelerator_type": (str, _NONE),
    "label_selector": (dict, _NONE),
    "runtime_env": (dict, _NONE),
    "lifetime": (str, _NONE),
    "get_if_exists": (bool,),
    "concurrency_groups": (dict, list, _NONE),
    "concurrency_group": (str, _NONE),
    "enable_task_events": (bool,),
    "_labels": (dict, _NONE),
    "fallback_strategy": (list, _NONE),
    "allow_out_of_order_execution": (bool, _NONE),
    "enable_tensor_transport": (bool, _NONE),
    "tensor_transport": (str, _NONE),
    "max_calls": (int, _NONE),
    "max_pending_calls": (int, _NONE),
    "object_store_memory": (int, _NONE),
    "_generator_backpressure_num_objects": (int, _NONE),
    "_num_objects_per_yield": (int, _NONE),
    "_actor_generator_backpressure_num_objects": (int, _NONE),
    "_mesh_member": (dict, _NONE),
}


def check(options: dict[str, Any], allowed: set[str], what: str) -> dict[str, Any]:
    for key in options:
        if key not in allowed:
            raise ValueError(
                f"unknown option {key!r} for {what}; valid options are: "
                f"{', '.join(sorted(allowed))}"
            )
    checked = dict(options)
    for key, value in checked.items():
        types = _TYPES.get(key)
        if types is not None and (
            not isinstance(value, types) or (bool not in types and isinstance(value, bool))
        ):
            names = " or ".join("None" if t is _NONE else t.__name__ for t in types)
            raise TypeError(f"option {key!r} must be {names}, got {type(value).__name__}")
    if any(checked.get(key) is not None for key in GROUP_OPTIONS):
        _group_options_to_strategy(checked)
    if checked.get("label_selector"):
        raise ValueError(
            "label_selector is not supported by actorflow yet (nodes carry no labels): use "
            "custom resources (resources={...}) or NodeAffinitySchedulingStrategy"
        )
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
        if value not in ("streaming", "dynamic") and (
            isinstance(value, bool) or not isinstance(value, int) or value < 0
        ):
            raise ValueError(
                f"num_returns must be an int >= 0, 'streaming' or 'dynamic', got {value!r}"
            )
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
        strategy, (NodeAffinitySchedulingStrategy, PlacementGroupSchedulingStrategy)
    ):
        raise ValueError(
            f"scheduling_strategy must be 'DEFAULT', 'SPREAD', a "
            f"NodeAffinitySchedulingStrategy or a PlacementGroupSchedulingStrategy, got "
            f"{strategy!r}"
        )
    if "lifetime" in checked and checked["lifetime"] not in (None, "detached", "non_detached"):
        raise ValueError(f"lifetime must be 'detached' or None, got {checked['lifetime']!r}")
    return checked


def _group_options_to_strategy(checked: dict[str, Any]) -> None:
    if checked.get("scheduling_strategy") is not None:
        raise ValueError(
            "placement_group options cannot be given with scheduling_strategy: use "
            "scheduling_strategy=PlacementGroupSchedulingStrategy(...) alone"
        )
    warnings.warn(
        "the placement_group option is deprecated (as in Ray): use scheduling_strategy="
        "PlacementGroupSchedulingStrategy(placement_group, ...) instead",
        DeprecationWarning,
        stacklevel=4,
    )
    index = checked.get("placement_group_bundle_index")
    group = checked.get("placement_group", "default")
    if group != "default":  # "default": the group the caller captures, if any
        checked["scheduling_strategy"] = PlacementGroupSchedulingStrategy(
            group,
            -1 if index is None else index,
            checked.get("placement_group_capture_child_tasks"),
        )
    for key in GROUP_OPTIONS:
        checked.pop(key, None)


def resource_request(options: dict[str, Any], default_cpus: float) -> dict[str, float]:
    cpus = options.get("num_cpus")
    request: dict[str, float] = {"CPU": default_cpus if cpus is None else cpus}
    if options.get("num_gpus"):
        request["GPU"] = options["num_gpus"]
    if options.get("memory"):
        request["memory"] = options["memory"]
    if options.get("accelerator_type"):  # as Ray: a node started with that resource
        request[f"accelerator_type:{options['accelerator_type']}"] = 0.001
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
