"""A node's side of runtime_envs: what a worker for an env needs, set up once and cached.

The raylet asks ``prepare(key, wire)`` before it starts the first worker of an env; the answer is a
PreparedEnv (the worker's environment variables, working directory, import path and Python).
Setup runs off the raylet's loop: packages are fetched from the GCS in pieces and unzipped on a
thread; pip runs as a subprocess, awaited. The whole setup is bounded by the env's
``setup_timeout_seconds``; a failure is a RuntimeEnvSetupError and is not cached (the next
request tries again).

The cache lives in the node's own directory (``runtime_resources/<node id>`` of its session):
``packages/<hash>/`` unpacked once per package, ``pip/<hash>/`` one virtual environment per
distinct pip spec, marked complete by a file written last. A virtual environment is created with
the system's site packages and a ``.pth`` file that adds the node's own (so actorflow and what
the node has stay importable, the env's packages first).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import site
import sys
import zipfile
from dataclasses import dataclass
from typing import Any

from actorflow._private import errors, ids
from actorflow._private.runtime_env import spec, store
from actorflow._private.runtime_env.packaging import is_archive, package_hash

READY = ".actorflow-ready"


@dataclass(frozen=True)
class PreparedEnv:
    wire: dict[str, Any]
    env_vars: dict[str, str]
    working_dir: str  # "" keeps the node's
    sys_path: tuple[str, ...]  # before the job's own path
    python: str  # "" is the node's own interpreter


class EnvAgent:
    def __init__(
        self, cache_dir: str, ask: store.Ask, default_timeout: float, python: str = ""
    ) -> None:
        self.cache_dir = cache_dir
        self._ask = ask
        self._default_timeout = default_timeout
        self._python = python or sys.executable
        self._ready: dict[str, PreparedEnv] = {}
        self._pending: dict[str, asyncio.Task] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    def ready(self, key: str) -> PreparedEnv | None:
        return self._ready.get(key)

    def prepare(self, key: str, wire: dict[str, Any]) -> asyncio.Task:
        """The setup of env key (started once while it runs); its result is the PreparedEnv."""
        task = self._pending.get(key)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._prepare(key, wire))
            self._pending[key] = task
            task.add_done_callback(lambda t: self._done(key, t))
        return task

    def _done(self, key: str, task: asyncio.Task) -> None:
        self._pending.pop(key, None)
        if not task.cancelled() and task.exception() is None:
            self._ready[key] = task.result()

    async def _prepare(self, key: str, wire: dict[str, Any]) -> PreparedEnv:
        timeout = spec.setup_timeout(wire, self._default_timeout)
        try:
            return await asyncio.wait_for(self._setup(wire), timeout)
        except asyncio.TimeoutError:
            raise errors.RuntimeEnvSetupError(
                f"setting up the runtime_env timed out after {timeout:g} s "
                f"(setup_timeout_seconds); runtime_env: {_describe(wire)}"
            ) from None
        except errors.RuntimeEnvSetupError:
            raise
        except Exception as exc:
            raise errors.RuntimeEnvSetupError(
                f"could not set up the runtime_env {_describe(wire)}: {type(exc).__name__}: {exc}"
            ) from None

    async def _setup(self, wire: dict[str, Any]) -> PreparedEnv:
        working_dir = ""
        path: list[str] = []
        if wire.get("working_dir"):
            root = await self._package(wire["working_dir"])
            working_dir = _single_top_dir(root) if is_archive(wire["working_dir"]) else root
            path.append(working_dir)
        for uri in wire.get("py_modules") or ():
            path.append(await self._package(uri))
        python = ""
        if wire.get("pip"):
            python = await self._venv(wire["pip"])
        return PreparedEnv(wire, dict(wire.get("env_vars") or {}), working_dir, tuple(path), python)

    async def _package(self, uri: str) -> str:
        """The local copy of a package: a directory (zip) or the file itself (wheel)."""
        digest = package_hash(uri)
        is_wheel = uri.endswith(".whl")
        target = os.path.join(self.cache_dir, "packages", digest + (".whl" if is_wheel else ""))
        async with self._lock("package:" + digest):
            if os.path.exists(target):
                return target
            data = await store.fetch(self._ask, uri)
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(None, _install_package, data, target, is_wheel)
        return target

    async def _venv(self, pip: dict[str, Any]) -> str:
        home = os.path.join(self.cache_dir, "pip", spec.pip_key(pip))
        python = os.path.join(home, "bin", "python")
        async with self._lock("pip:" + home):
            if os.path.exists(os.path.join(home, READY)):
                return python
            shutil.rmtree(home, ignore_errors=True)  # a build that did not finish
            os.makedirs(os.path.dirname(home), exist_ok=True)
            await _run(
                [self._python, "-m", "venv", "--without-pip", "--system-site-packages", home],
                "creating the virtual environment",
                os.path.join(os.path.dirname(home), os.path.basename(home) + ".log"),
            )
            _link_node_packages(home)
            requirements = list(pip["packages"])
            if pip.get("pip_version"):
                requirements.insert(0, "pip" + pip["pip_version"])
            with open(os.path.join(home, "requirements.txt"), "w") as f:
                f.write("\n".join(requirements) + "\n")
            log = os.path.join(home, "pip.log")
            await _run(
                [python, "-m", "pip", "install", "--disable-pip-version-check", "--no-input"]
                + ["-r", os.path.join(home, "requirements.txt")],
                f"pip install of {requirements}",
                log,
            )
            if pip.get("pip_check"):
                await _run([python, "-m", "pip", "check"], "pip check", log)
            with open(os.path.join(home, READY), "w"):
                pass
        return python

    def _lock(self, name: str) -> asyncio.Lock:
        lock = self._locks.get(name)
        if lock is None:
            lock = self._locks[name] = asyncio.Lock()
        return lock

    async def aclose(self) -> None:
        for task in list(self._pending.values()):
            task.cancel()


async def _run(argv: list[str], what: str, log_path: str) -> None:
    """Run a setup command, its output into log_path; RuntimeEnvSetupError with the output's
    end if it fails. A cancelled setup (timeout, node shutdown) kills it."""
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ACTORFLOW_")}
    env["PIP_NO_INPUT"] = "1"
    with open(log_path, "ab") as log:
        process = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log, env=env
        )
        try:
            code = await process.wait()
        except BaseException:
            if process.returncode is None:
                process.kill()
                await process.wait()
            raise
    if code != 0:
        raise errors.RuntimeEnvSetupError(
            f"{what} failed (exit code {code}):\n{_tail(log_path)}\n(full output: {log_path})"
        )


def _tail(path: str, lines: int = 15) -> str:
    try:
        with open(path, errors="replace") as f:
            return "\n".join(f.read().splitlines()[-lines:])
    except OSError:
        return ""


def _install_package(data: bytes, target: str, is_wheel: bool) -> None:
    """Write a package into the cache under target, atomically (a rename of a finished copy)."""
    os.makedirs(os.path.dirname(target), exist_ok=True)
    partial = f"{target}.partial-{ids.new_id(4).hex()}"
    if is_wheel:
        with open(partial, "wb") as f:
            f.write(data)
    else:
        import io

        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            for info in archive.infolist():
                name = os.path.normpath(info.filename)
                if name.startswith(("..", "/")) or os.path.isabs(name):
                    raise errors.RuntimeEnvSetupError(f"package entry {info.filename!r} escapes")
            archive.extractall(partial)
            for info in archive.infolist():  # keep the files' modes (scripts stay executable)
                mode = (info.external_attr >> 16) & 0o777
                if mode and not info.is_dir():
                    os.chmod(os.path.join(partial, info.filename), mode)
    try:
        os.rename(partial, target)
    except OSError:
        if not os.path.exists(target):
            raise
        shutil.rmtree(partial, ignore_errors=True)  # another setup got there first


def _single_top_dir(root: str) -> str:
    """A zip holding one top-level folder and nothing else: that folder is the working_dir."""
    entries = [e for e in os.listdir(root) if e != "__MACOSX"]
    if len(entries) == 1 and os.path.isdir(os.path.join(root, entries[0])):
        return os.path.join(root, entries[0])
    return root


def _link_node_packages(home: str) -> None:
    """Make the node's own site packages importable in the venv, after the venv's own."""
    version = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    own = os.path.join(home, "lib", version, "site-packages")
    os.makedirs(own, exist_ok=True)
    dirs = [*site.getsitepackages(), site.getusersitepackages()]
    lines = [f"import site; site.addsitedir({d!r})" for d in dirs if os.path.isdir(d)]
    with open(os.path.join(own, "_actorflow_node_packages.pth"), "w") as f:
        f.write("\n".join(lines) + "\n")


def _describe(wire: dict[str, Any]) -> str:
    shown = {k: v for k, v in wire.items() if k != "config"}
    text = repr(shown)
    return text if len(text) < 300 else text[:300] + "..."
