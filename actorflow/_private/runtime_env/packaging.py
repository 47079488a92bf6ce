"""The driver's side of working_dir and py_modules: local folders packed into zip packages.

A package is named by the hash of its bytes (``gcs://_actorflow_pkg_<sha1>.zip``): the same
content is uploaded once and unpacked once per node. Zips are built deterministically (sorted
entries, a fixed timestamp), so an unchanged folder gives the same name. ``excludes`` and the
folder's top-level ``.gitignore`` use gitignore patterns (excludes.py). Packing reads only local
files; uploading is the caller's (runtime_env/store.py).
"""

from __future__ import annotations

import hashlib
import io
import os
import threading
import zipfile
from collections.abc import Callable
from dataclasses import dataclass

from actorflow._private.runtime_env.excludes import Excluder
from actorflow._private.runtime_env.spec import PACKAGE_SCHEME

_EPOCH = (1980, 1, 1, 0, 0, 0)  # zip's earliest date: the same bytes for the same files


@dataclass(frozen=True)
class Package:
    uri: str
    data: bytes | None  # None: known to be uploaded already, not packed again


def package_uri(data: bytes, suffix: str = ".zip", archive: bool = False) -> str:
    """The package's name; archive: a user's own .zip (as Ray, a single top-level folder in it
    is the working_dir), not one packed from a folder here."""
    kind = "zip" if archive else "pkg"
    return f"{PACKAGE_SCHEME}_actorflow_{kind}_{hashlib.sha1(data).hexdigest()}{suffix}"


def is_archive(uri: str) -> bool:
    return uri.startswith(PACKAGE_SCHEME + "_actorflow_zip_")


def package_hash(uri: str) -> str:
    """The content hash in a package URI (its cache directory's name on every node)."""
    name = uri[len(PACKAGE_SCHEME) :]
    return name.rsplit(".", 1)[0].rsplit("_", 1)[-1]


class Packer:
    """Packs local paths of this process's runtime_envs, remembering what it packed: a folder
    whose files did not change (same names, sizes and modification times) is not zipped again."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.uploaded: set[str] = set()  # URIs the GCS has (set by the uploader)
        self._known: dict[tuple, tuple[tuple, str]] = {}  # what -> (fingerprint, uri)
        self._lock = threading.Lock()  # .remote() may be called from several threads

    def package(self, path: str, field: str, excludes: list[str], keep_top: bool) -> Package:
        """The package of a local folder or file (keep_top: the folder itself is in the zip,
        as a py_modules entry needs), or of a local .zip or .whl file as it is."""
        path = os.path.abspath(os.path.expanduser(path))
        if not os.path.exists(path):
            raise ValueError(f"runtime_env {field}: {path} does not exist")
        if field == "working_dir" and not (os.path.isdir(path) or path.endswith(".zip")):
            raise ValueError(
                f"runtime_env working_dir must be a directory or a .zip file, got {path}"
            )
        key = (path, field, tuple(excludes), keep_top)
        if path.endswith((".zip", ".whl")) and os.path.isfile(path):
            return self._known_or(key, _file_fingerprint(path), lambda: _read(path), path)
        excluder = Excluder(
            excludes, os.path.join(path, ".gitignore") if os.path.isdir(path) else None
        )
        files = _files(path, excluder)
        fingerprint = tuple((rel, st.st_size, st.st_mtime_ns) for rel, _full, st in files)
        prefix = os.path.basename(path) if keep_top or os.path.isfile(path) else ""
        return self._known_or(key, fingerprint, lambda: _zip(files, prefix), path)

    def _known_or(
        self, key: tuple, fingerprint: tuple, build: Callable[[], bytes], path: str
    ) -> Package:
        with self._lock:
            known = self._known.get(key)
        if known is not None and known[0] == fingerprint and known[1] in self.uploaded:
            return Package(known[1], None)
        data = build()
        if len(data) > self.max_bytes:
            raise ValueError(
                f"runtime_env package of {path} is {len(data) / 2**20:.1f} MiB, over the limit "
                f"of {self.max_bytes / 2**20:.0f} MiB (ACTORFLOW_RUNTIME_ENV_MAX_PACKAGE_BYTES); "
                f"leave large files out with excludes=[...]"
            )
        suffix = ".whl" if path.endswith(".whl") else ".zip"
        uri = package_uri(data, suffix, archive=path.endswith(".zip") and os.path.isfile(path))
        with self._lock:
            self._known[key] = (fingerprint, uri)
        return Package(uri, data)


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _file_fingerprint(path: str) -> tuple:
    st = os.stat(path)
    return ((path, st.st_size, st.st_mtime_ns),)


def _files(root: str, excluder: Excluder) -> list[tuple[str, str, os.stat_result]]:
    """(relative posix path, full path, stat) of every file to pack, sorted. Symbolic links
    are followed (as in Ray)."""
    if os.path.isfile(root):
        return [(os.path.basename(root), root, os.stat(root))]
    found = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        rel_dir = os.path.relpath(dirpath, root).replace(os.sep, "/")
        rel_dir = "" if rel_dir == "." else rel_dir + "/"
        dirnames[:] = sorted(d for d in dirnames if not excluder.excluded(rel_dir + d, True))
        for name in filenames:
            rel = rel_dir + name
            if excluder.excluded(rel, False):
                continue
            full = os.path.join(dirpath, name)
            try:
                found.append((rel, full, os.stat(full)))
            except OSError:
                continue  # a dangling link, or removed meanwhile
    return sorted(found)


def _zip(files: list[tuple[str, str, os.stat_result]], prefix: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as archive:
        for rel, full, st in files:
            name = f"{prefix}/{rel}" if prefix and rel != prefix else rel
            info = zipfile.ZipInfo(name, _EPOCH)
            info.external_attr = (st.st_mode & 0xFFFF) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            with open(full, "rb") as f:
                archive.writestr(info, f.read())
    return buffer.getvalue()
