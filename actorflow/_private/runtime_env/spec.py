"""What a runtime_env may say, checked where it is written; how envs merge; what identifies one.

A runtime_env is a dict of Ray's fields. ``validate`` turns what a user wrote (a dict or a
RuntimeEnv) into its plain, checked form: ``pip`` always as ``{"packages": [...], "pip_check":
bool}``, ``py_modules`` as a list of paths or URIs, ``config`` as a plain dict. Local paths are
still local here; packaging.py replaces them with the URIs of uploaded packages (the "wire" form,
which travels in lease requests and worker specs). Nothing here touches the network.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import re
import types
import urllib.parse
from collections.abc import Mapping
from typing import Any

import cloudpickle

# The fields actorflow sets up.
SUPPORTED = (
    "env_vars",
    "working_dir",
    "py_modules",
    "excludes",
    "pip",
    "config",
    "worker_process_setup_hook",
)
# Ray's other fields: known, refused with a clear error (they need conda, containers, uv, ...).
NOT_SUPPORTED = (
    "conda",
    "container",
    "image_uri",
    "uv",
    "py_executable",
    "nsight",
    "mpi",
    "java_jars",
)
CONFIG_FIELDS = ("setup_timeout_seconds", "eager_install", "log_files")
# The URI scheme of packages this cluster stores itself (in the GCS's key-value store).
PACKAGE_SCHEME = "gcs://"


class RuntimeEnvConfig(dict):
    """Ray's ``RuntimeEnvConfig``: how a runtime_env is set up, not what it holds."""

    def __init__(
        self,
        setup_timeout_seconds: int = 600,
        eager_install: bool = True,
        log_files: list[str] | None = None,
    ) -> None:
        super().__init__(
            setup_timeout_seconds=setup_timeout_seconds,
            eager_install=eager_install,
            log_files=list(log_files or []),
        )
        check_config(self)

    @classmethod
    def parse_and_validate_runtime_env_config(cls, config: Any) -> RuntimeEnvConfig:
        if isinstance(config, RuntimeEnvConfig):
            return config
        if not isinstance(config, dict):
            raise TypeError(f"runtime_env config must be a dict, got {type(config).__name__}")
        check_config(config)
        return cls(**config)

    def to_dict(self) -> dict[str, Any]:
        return dict(self)


class RuntimeEnv(dict):
    """Ray's ``RuntimeEnv``: a runtime_env as a checked dict (``RuntimeEnv(pip=[...],
    env_vars={...})``); anything that takes a runtime_env dict takes one."""

    def __init__(
        self,
        *,
        py_modules: list | None = None,
        working_dir: str | None = None,
        pip: Any = None,
        env_vars: dict[str, str] | None = None,
        config: dict | RuntimeEnvConfig | None = None,
        _validate: bool = True,
        **fields: Any,
    ) -> None:
        given = {
            "py_modules": py_modules,
            "working_dir": working_dir,
            "pip": pip,
            "env_vars": env_vars,
            "config": config,
            **fields,
        }
        given = {k: v for k, v in given.items() if v is not None}
        super().__init__(validate(given) if _validate else given)

    def to_dict(self) -> dict[str, Any]:
        return dict(self)

    def serialize(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def deserialize(cls, serialized: str) -> RuntimeEnv:
        return cls(_validate=False, **json.loads(serialized))

    def env_vars(self) -> dict[str, str]:
        return dict(self.get("env_vars") or {})

    def working_dir(self) -> str:
        return str(self.get("working_dir") or "")

    def py_modules(self) -> list[str]:
        return list(self.get("py_modules") or [])

    def pip_config(self) -> dict[str, Any]:
        return dict(self.get("pip") or {})

    def has_working_dir(self) -> bool:
        return bool(self.get("working_dir"))

    def has_py_modules(self) -> bool:
        return bool(self.get("py_modules"))

    def has_pip(self) -> bool:
        return bool(self.get("pip"))


def validate(env: Any) -> dict[str, Any]:
    """The checked, plain form of a runtime_env; ValueError or TypeError naming what is wrong."""
    if env is None:
        return {}
    if not isinstance(env, dict):
        raise TypeError(
            f"runtime_env must be a dict or a RuntimeEnv, got {type(env).__name__}: {env!r:.80}"
        )
    refused = sorted(k for k in env if k in NOT_SUPPORTED and env[k] is not None)
    if refused:
        raise ValueError(
            f"runtime_env field(s) {', '.join(refused)} are not supported by actorflow; "
            f"supported fields: {', '.join(SUPPORTED)}"
        )
    unknown = sorted(str(k) for k in env if k not in SUPPORTED and k not in NOT_SUPPORTED)
    if unknown:
        raise ValueError(
            f"unknown runtime_env field(s) {', '.join(unknown)}; supported fields: "
            f"{', '.join(SUPPORTED)}"
        )
    checked: dict[str, Any] = {}
    for key, value in env.items():
        if value is None:
            continue
        if key == "env_vars":
            checked[key] = check_env_vars(value)
        elif key == "working_dir":
            checked[key] = _check_path(value, "working_dir")
        elif key == "py_modules":
            checked[key] = _check_py_modules(value)
        elif key == "excludes":
            if not isinstance(value, (list, tuple)) or not all(isinstance(p, str) for p in value):
                raise TypeError(f"runtime_env excludes must be a list of str, got {value!r:.80}")
            checked[key] = list(value)
        elif key == "pip":
            pip = normalize_pip(value)
            if pip["packages"]:
                checked[key] = pip
        elif key == "config":
            checked[key] = check_config(value)
        elif key == "worker_process_setup_hook":
            checked[key] = check_setup_hook(value)
    return checked


def check_setup_hook(value: Any) -> Any:
    """Ray's worker_process_setup_hook: a function run in every worker of the env before any
    task, given as the function (pickled here) or as "module.function"."""
    if isinstance(value, dict) and isinstance(value.get("pickled"), str):
        return value  # already checked (an env passed on)
    if isinstance(value, str):
        if "." not in value.strip("."):
            raise ValueError(
                f"runtime_env worker_process_setup_hook={value!r} must name a function as "
                f"'module.function'"
            )
        return value
    if not callable(value):
        raise TypeError(
            f"runtime_env worker_process_setup_hook must be a function or 'module.function', "
            f"got {type(value).__name__}"
        )
    return {"pickled": cloudpickle.dumps(value).hex()}


def run_setup_hook(hook: Any) -> None:
    """Call a worker_process_setup_hook (check_setup_hook's form)."""
    if isinstance(hook, dict):
        fn = cloudpickle.loads(bytes.fromhex(hook["pickled"]))
    else:
        module, _, name = hook.rpartition(".")
        fn = getattr(importlib.import_module(module), name)
    fn()


def check_env_vars(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        raise TypeError(f"runtime_env env_vars must be a dict of str to str, got {value!r:.80}")
    for name, text in value.items():
        if not isinstance(name, str) or not isinstance(text, str):
            raise TypeError(
                f"runtime_env env_vars must map str to str: {name!r} -> {text!r} is not "
                f"(write numbers as strings, e.g. '32')"
            )
        if not name or "=" in name or "\0" in name or "\0" in text:
            raise ValueError(f"runtime_env env_vars: {name!r} is not a valid variable name")
    return dict(value)


def _check_path(value: Any, field: str) -> str:
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str) or not value:
        raise TypeError(f"runtime_env {field} must be a path or URI string, got {value!r:.80}")
    if value.startswith("file://"):  # Ray's local-file URI: file://[localhost]/path
        parsed = urllib.parse.urlparse(value)
        if parsed.netloc not in ("", "localhost"):
            raise ValueError(
                f"runtime_env {field}={value!r}: a file:// URI must name this machine "
                f"(file:///path or file://localhost/path)"
            )
        return urllib.parse.unquote(parsed.path)
    if "://" in value and not value.startswith(PACKAGE_SCHEME):
        raise ValueError(
            f"runtime_env {field}={value!r}: remote URIs ({value.split('://')[0]}://) are not "
            f"supported by actorflow; give a local directory or .zip file (it is uploaded to the "
            f"cluster)"
        )
    return value


def _check_py_modules(value: Any) -> list[str]:
    if not isinstance(value, (list, tuple)):
        raise TypeError(f"runtime_env py_modules must be a list, got {type(value).__name__}")
    paths = []
    for entry in value:
        if isinstance(entry, types.ModuleType):
            entry = module_path(entry)
        paths.append(_check_path(entry, "py_modules"))
    return paths


def module_path(module: types.ModuleType) -> str:
    """Where an imported module lives: its package directory, or its single file."""
    file = getattr(module, "__file__", None)
    if not file:
        raise ValueError(f"runtime_env py_modules: module {module.__name__} has no file to upload")
    if os.path.basename(file) == "__init__.py":
        return os.path.dirname(os.path.abspath(file))
    return os.path.abspath(file)


def normalize_pip(value: Any) -> dict[str, Any]:
    """pip as Ray's dict form: a list of requirement lines, a requirements.txt path (read here,
    on the driver, as Ray does) or ``{"packages": ..., "pip_check": ..., "pip_version": ...}``."""
    options: dict[str, Any] = {"pip_check": False}
    if isinstance(value, dict):
        unknown = sorted(set(value) - {"packages", "pip_check", "pip_version"})
        if unknown:
            raise ValueError(
                f"runtime_env pip: unknown key(s) {', '.join(unknown)}; expected packages, "
                f"pip_check, pip_version"
            )
        if "packages" not in value:
            raise ValueError("runtime_env pip as a dict needs 'packages'")
        if not isinstance(value.get("pip_check", False), bool):
            raise TypeError("runtime_env pip: pip_check must be a bool")
        options["pip_check"] = value.get("pip_check", False)
        version = value.get("pip_version")
        if version is not None:
            if not isinstance(version, str):
                raise TypeError("runtime_env pip: pip_version must be a str such as '==23.2'")
            options["pip_version"] = version
        value = value["packages"]
    if isinstance(value, str):
        value = _read_requirements(value)
    if not isinstance(value, (list, tuple)) or not all(isinstance(p, str) for p in value):
        raise TypeError(
            f"runtime_env pip must be a list of requirements, a requirements.txt path or a dict "
            f"with 'packages', got {value!r:.80}"
        )
    packages = [line.strip() for line in value if line.strip()]
    return {"packages": packages, **options}


def _read_requirements(path: str) -> list[str]:
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except OSError as exc:
        raise ValueError(
            f"runtime_env pip: cannot read requirements file {path!r}: {exc}"
        ) from None
    return [line for line in lines if line.strip() and not line.lstrip().startswith("#")]


def check_config(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise TypeError(f"runtime_env config must be a dict, got {type(value).__name__}")
    unknown = sorted(set(value) - set(CONFIG_FIELDS))
    if unknown:
        raise ValueError(
            f"unknown runtime_env config field(s) {', '.join(unknown)}; expected "
            f"{', '.join(CONFIG_FIELDS)}"
        )
    timeout = value.get("setup_timeout_seconds", 600)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError(f"setup_timeout_seconds must be a number, got {timeout!r}")
    if timeout <= 0 and timeout != -1:
        raise ValueError(f"setup_timeout_seconds must be > 0 (or -1: no limit), got {timeout!r}")
    if not isinstance(value.get("eager_install", True), bool):
        raise TypeError("eager_install must be a bool")
    return dict(value)


def merge(parent: dict[str, Any] | None, child: dict[str, Any] | None) -> dict[str, Any]:
    """Ray's inheritance: the child's fields replace the parent's, except env_vars, which are
    merged (the child's win)."""
    if not child:
        return dict(parent or {})
    if not parent:
        return dict(child)
    merged = {**parent, **child}
    if "env_vars" in parent and "env_vars" in child:
        merged["env_vars"] = {**parent["env_vars"], **child["env_vars"]}
    return merged


def env_key(wire: dict[str, Any] | None) -> str:
    """What identifies the workers a runtime_env needs ("" for none): its content without the
    setup config (a longer timeout does not make another worker)."""
    if not wire:
        return ""
    content = {k: v for k, v in wire.items() if k != "config"}
    if not content:
        return ""
    text = json.dumps(content, sort_keys=True, separators=(",", ":"))
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def pip_key(pip: dict[str, Any]) -> str:
    """One virtual environment per distinct pip spec (per Python version) per node."""
    import sys

    text = json.dumps([pip, sys.version_info[:2]], sort_keys=True)
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def setup_timeout(wire: dict[str, Any] | None, default: float) -> float | None:
    """The setup timeout in seconds (None: no limit)."""
    timeout = ((wire or {}).get("config") or {}).get("setup_timeout_seconds")
    if timeout is None:
        return default
    return None if timeout == -1 else float(timeout)


def eager_install(wire: dict[str, Any] | None) -> bool:
    return bool(((wire or {}).get("config") or {}).get("eager_install", True))


_REFERENCE = re.compile(r"\$\{([^}]*)\}")


def expand_env_vars(env_vars: dict[str, str], environ: Mapping[str, str]) -> dict[str, str]:
    """Ray's ``${NAME}`` references to the variables the process already has ("" if unset)."""
    return {
        name: _REFERENCE.sub(lambda m: environ.get(m.group(1), ""), value)
        for name, value in env_vars.items()
    }


def needs_fresh_process(env_vars: dict[str, str], python: str) -> bool:
    """A worker that cannot be forked from the node's preloaded fork server: another Python, or
    variables only read as a process starts (the dynamic loader's, the interpreter's)."""
    return bool(python) or any(name.startswith(("LD_", "PYTHON")) for name in env_vars)
