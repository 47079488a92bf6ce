"""A ``ray`` package that is actorflow, for running Ray's own scripts and tests unchanged.

Put ``compat/ray_alias`` first on PYTHONPATH (and the repository root after it): ``import ray``
then binds the ``actorflow`` module, and every ``ray.X`` import resolves to ``actorflow.X`` (the
same module object, not a copy). A Ray module actorflow does not have fails as
``ModuleNotFoundError`` naming the ``actorflow.X`` it looked for. Ray's test helpers
(``ray._private.test_utils``, ``ray.cluster_utils``, ...) map to the harness's own modules,
written on the public API.

With COMPAT_LENIENT_IMPORTS=1 a missing module imports as a placeholder instead, whose every
use raises that ModuleNotFoundError, and a name an actorflow module lacks is a placeholder whose
use raises ImportError: a test file that imports a Ray internal at its top still collects, and
only the cases that use the internal fail, each saying which module or name it lacked.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import os
import sys
import types
from collections.abc import Sequence

# Ray modules served by the harness itself rather than by an actorflow module.
HELPER_MODULES = {
    "ray._common": "compat",
    "ray.cluster_utils": "compat.cluster_utils",
    "ray.tests.client_test_utils": "compat.test_utils",
    "ray._common.test_utils": "compat.test_utils",
    "ray._private.test_utils": "compat.test_utils",
    "ray.tests": "compat",
    "ray.tests.conftest": "compat.fixtures",
    # Ray's compiled core exports public classes too (ObjectRef, ObjectRefGenerator): the
    # names actorflow has come from its top-level package.
    "ray._raylet": "actorflow",
}


def target_of(fullname: str) -> str:
    """The module that stands for the Ray module ``fullname``."""
    if fullname in HELPER_MODULES:
        return HELPER_MODULES[fullname]
    return "actorflow" + fullname[len("ray") :]


class _AliasLoader(importlib.abc.Loader):
    """Hands the import system an already imported module and keeps that module's own spec."""

    def __init__(self, module: types.ModuleType) -> None:
        self.module = module
        self.own_spec = module.__spec__

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        return self.module

    def exec_module(self, module: types.ModuleType) -> None:
        # The import system has just set __spec__ to the alias spec: put actorflow's back, so
        # the module still reads as itself (reload, pickling by reference, -m).
        if self.own_spec is not None:
            module.__spec__ = self.own_spec


class RayAliasFinder(importlib.abc.MetaPathFinder):
    """Resolves ``ray.X`` to ``actorflow.X`` (or to a harness helper)."""

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None = None,
        target: types.ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        if not fullname.startswith("ray."):
            return None
        name = target_of(fullname)
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as error:
            missing = error.name or ""
            if not (name == missing or name.startswith(missing + ".")):
                raise  # the target exists but something it imports does not
            message = f"No module named {name!r} (what {fullname!r} maps to)"
            if os.environ.get("COMPAT_LENIENT_IMPORTS") == "1":
                module = MissingModule(fullname, message)
            else:
                raise ModuleNotFoundError(message, name=fullname) from None
        else:
            if os.environ.get("COMPAT_LENIENT_IMPORTS") == "1":
                make_lenient(module)
        is_package = hasattr(module, "__path__")
        return importlib.machinery.ModuleSpec(fullname, _AliasLoader(module), is_package=is_package)


class Missing:
    """Stands for a name from a missing module: any use raises the module's import error."""

    def __init__(self, qualname: str, message: str) -> None:
        self._qualname = qualname
        self._message = message

    def _fail(self, *args: object, **kwargs: object) -> None:
        if self._message.startswith("No module named"):
            raise ModuleNotFoundError(f"{self._message}; needed for {self._qualname}")
        raise ImportError(self._message)

    __call__ = __iter__ = __bool__ = __len__ = __getitem__ = __enter__ = _fail  # type: ignore

    def __getattr__(self, name: str) -> object:
        if name.startswith("__"):
            raise AttributeError(name)
        self._fail()
        return None

    def __repr__(self) -> str:
        return f"<missing {self._qualname}>"


class MissingModule(types.ModuleType):
    """A placeholder for a Ray module actorflow lacks (COMPAT_LENIENT_IMPORTS=1)."""

    def __init__(self, fullname: str, message: str) -> None:
        super().__init__(fullname)
        self.__path__: list[str] = []  # a package: its submodules are placeholders too
        self._message = message

    def __getattr__(self, name: str) -> object:
        if name.startswith("__"):
            raise AttributeError(name)
        return Missing(f"{self.__name__}.{name}", self._message)


def make_lenient(module: types.ModuleType) -> None:
    """Give a real actorflow module a module ``__getattr__`` (PEP 562) for the names it lacks:
    a submodule is imported as usual; any other missing name is a placeholder that raises
    ImportError naming it when used. Names the module has are untouched."""
    own = vars(module).get("__getattr__")  # the module's own lazy names (actorflow.util)
    if getattr(own, "compat_lenient", False) or isinstance(module, MissingModule):
        return

    def __getattr__(name: str) -> object:
        if own is not None:
            try:
                return own(name)
            except AttributeError:
                pass
        if name.startswith("__"):
            raise AttributeError(name)
        try:
            return importlib.import_module(f"{module.__name__}.{name}")
        except ModuleNotFoundError as error:
            if error.name != f"{module.__name__}.{name}":
                raise
        return Missing(
            f"{module.__name__}.{name}",
            f"cannot import name {name!r} from {module.__name__!r} (actorflow has no such name)",
        )

    __getattr__.compat_lenient = True  # type: ignore[attr-defined]
    module.__getattr__ = __getattr__  # type: ignore[attr-defined]


def install() -> types.ModuleType:
    """Put the finder first (before the path finder could load actorflow's files a second time
    under ``ray.*`` names) and make ``ray`` the actorflow module."""
    if not any(isinstance(finder, RayAliasFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, RayAliasFinder())
    actorflow = importlib.import_module("actorflow")
    if os.environ.get("COMPAT_LENIENT_IMPORTS") == "1":
        make_lenient(actorflow)
    sys.modules["ray"] = actorflow
    return actorflow


install()
