"""This process's runtime_env, and the envs of the tasks and actors it starts.

A process runs in one env (``current``): a driver in its job's (``init(runtime_env=...)``; the
driver's own code does not run in it, as in Ray), a worker in the one it was started for. A task
or actor that names no runtime_env inherits it; one that names one gets Ray's merge of the two
(spec.merge). Local working_dir and py_modules paths become packages (packaging.py), uploaded to
the GCS on the runtime loop; a call whose packages are still uploading is submitted once they
are up.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from dataclasses import dataclass
from typing import Any

from actorflow._private.config import Config
from actorflow._private.protocol.message import spec_of
from actorflow._private.runtime import Runtime
from actorflow._private.runtime_env import spec, store
from actorflow._private.runtime_env.packaging import Package, Packer

logger = logging.getLogger("actorflow.runtime_env")


@dataclass(frozen=True)
class ResolvedEnv:
    wire: dict[str, Any] | None  # None: no env
    key: str
    uploaded: concurrent.futures.Future | None  # done once its packages are in the GCS


class RuntimeEnvs:
    def __init__(self, runtime: Runtime, config: Config, gcs_address: str) -> None:
        self.runtime = runtime
        self.config = config
        self.gcs_address = gcs_address
        self.packer = Packer(config.runtime_env_max_package_bytes)
        self.current: dict[str, Any] = {}
        self.inherited = ResolvedEnv(None, "", None)  # what a call that names no env gets

    def adopt(self, wire: dict[str, Any] | None) -> None:
        """This process runs in wire (its packages are in the GCS already)."""
        self.current = dict(wire or {})
        self.inherited = ResolvedEnv(self.current or None, spec.env_key(self.current), None)
        for uri in [self.current.get("working_dir"), *(self.current.get("py_modules") or ())]:
            if uri:
                self.packer.uploaded.add(uri)

    def resolve(self, option: Any) -> ResolvedEnv:
        """The env of a task or actor whose runtime_env option is option (any thread)."""
        if not option:
            return self.inherited
        wire, packages = self.to_wire(spec.validate(option))
        merged = spec.merge(self.current, wire)
        uploads = [p for p in packages if p.data is not None]
        future = None
        if uploads:
            future = asyncio.run_coroutine_threadsafe(self.upload(uploads), self.runtime.loop)
        return ResolvedEnv(merged or None, spec.env_key(merged), future)

    def to_wire(self, checked: dict[str, Any]) -> tuple[dict[str, Any], list[Package]]:
        """checked with its local paths packed: their packages' URIs instead."""
        wire = dict(checked)
        excludes = wire.pop("excludes", [])
        packages: list[Package] = []
        if "working_dir" in wire and not wire["working_dir"].startswith(spec.PACKAGE_SCHEME):
            package = self.packer.package(wire["working_dir"], "working_dir", excludes, False)
            packages.append(package)
            wire["working_dir"] = package.uri
        if "py_modules" in wire:
            uris = []
            for path in wire["py_modules"]:
                if path.startswith(spec.PACKAGE_SCHEME):
                    uris.append(path)
                    continue
                package = self.packer.package(path, "py_modules", excludes, True)
                packages.append(package)
                uris.append(package.uri)
            wire["py_modules"] = uris
        return wire, packages

    async def upload(self, packages: list[Package]) -> None:
        """Put packages in the GCS (loop thread); they are known to be there afterwards."""
        for package in packages:
            if package.uri in self.packer.uploaded or package.data is None:
                continue
            await store.upload(
                self.ask_gcs, package.uri, package.data, self.config.runtime_env_chunk_bytes
            )
            self.packer.uploaded.add(package.uri)

    async def ask_gcs(self, message: Any) -> Any:
        target = spec_of(type(message))
        return await self.runtime.request_until_reachable(
            self.gcs_address,
            target.target,
            target.method,
            message,
            self.config.gcs_reconnect_seconds,
        )

    def after_upload(self, env: ResolvedEnv, submit: Any, *args: Any) -> None:
        """submit(*args) on the runtime loop once env's packages are up (at once if they are).
        A failed upload is logged; the node that cannot fetch the package then fails the call
        with a RuntimeEnvSetupError naming it."""
        future = env.uploaded
        if future is None or (future.done() and future.exception() is None):
            self.runtime.call_soon(submit, *args)
            return

        def uploaded(done: concurrent.futures.Future) -> None:
            if done.exception() is not None:
                logger.error("could not upload a runtime_env package: %s", done.exception())
            self.runtime.call_soon(submit, *args)

        future.add_done_callback(uploaded)
