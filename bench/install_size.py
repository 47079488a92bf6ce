"""Disk footprint of an installed distribution and everything it requires.

    python -m bench.install_size [DIST ...]     # default: actorflow; JSON on stdout

Run in the interpreter whose environment is measured (the runner does this for
the ``install`` workload).  The closure of requirements is followed through the
distributions' metadata (``Requires-Dist``), skipping requirements whose
environment marker is false here and optional extras that nobody asked for
(``pkg[extra]`` in a requirement does pull in that extra).  The files of each
distribution come from its ``RECORD`` (``importlib.metadata``'s ``files``): every
listed file that exists is ``stat()``-ed once (hard links / duplicates counted
once), so compiled ``.pyc`` files that pip recorded are included and the
interpreter / standard library are not.

An editable install (``pip install -e``, PEP 660) records only a finder/.pth; its
code lives in the source tree.  For those, the top-level packages of the
distribution are located with ``importlib.util.find_spec`` and their directories
walked (``.pyc`` files only for this interpreter's cache tag), which is what a
wheel install with pip's byte-compilation would hold.
"""

from __future__ import annotations

import importlib.metadata as md
import importlib.util
import json
import os
import re
import site
import sys
from pathlib import Path

MIB = 1 << 20

# used only if a framework's own distribution metadata cannot be found (e.g. running
# from a source checkout that was never pip-installed)
FALLBACK_REQUIRES = {
    "actorflow": ["uvloop", "msgpack", "cloudpickle", "aiohttp"],
    "ray": [
        "click",
        "filelock",
        "jsonschema",
        "msgpack",
        "packaging",
        "protobuf",
        "pyyaml",
        "requests",
    ],
}


FALLBACK_TOP_LEVEL = {"actorflow": ["actorflow", "transports"]}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _site_dirs() -> list[Path]:
    dirs = list(site.getsitepackages()) if hasattr(site, "getsitepackages") else []
    user = site.getusersitepackages() if hasattr(site, "getusersitepackages") else None
    if isinstance(user, str):
        dirs.append(user)
    dirs += [p for p in sys.path if p.endswith(("site-packages", "dist-packages"))]
    out = []
    for d in dirs:
        try:
            out.append(Path(d).resolve())
        except OSError:
            pass
    return out


_SITE = None


def _in_site(dist: md.Distribution) -> bool:
    global _SITE
    if _SITE is None:
        _SITE = _site_dirs()
    try:
        base = Path(dist.locate_file("")).resolve()
    except (OSError, TypeError):
        return False
    return base in _SITE


def find_dist(name: str) -> md.Distribution | None:
    """The installed distribution ``name``; one in site-packages wins over a stray
    ``*.egg-info`` that happens to sit in the current directory."""
    want = _norm(name)
    cands = []
    for d in md.distributions():
        try:
            n = d.metadata["Name"]
        except Exception:
            continue
        if n and _norm(n) == want:
            cands.append(d)
    if not cands:
        return None
    cands.sort(key=lambda d: not _in_site(d))
    return cands[0]


# ----------------------------------------------------------------------------- requirements


def _parse_requirement(text: str, extras_wanted: set[str]) -> tuple[str, set[str]] | None:
    """(name, extras) of a Requires-Dist line if it applies here, else None."""
    try:
        from packaging.requirements import Requirement
    except ImportError:  # crude fallback: keep unconditional requirements only
        head, _, marker = text.partition(";")
        if marker.strip() and not any(f'"{e}"' in marker for e in extras_wanted):
            return None
        m = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[([^\]]*)\])?", head)
        if not m:
            return None
        extras = {e.strip() for e in (m.group(3) or "").split(",") if e.strip()}
        return m.group(1), extras
    req = Requirement(text)
    if req.marker is not None:
        envs = [{"extra": e} for e in sorted(extras_wanted)] or [{"extra": ""}]
        if not any(req.marker.evaluate(env) for env in envs):
            return None
    return req.name, set(req.extras)


def _importable(top: str) -> bool:
    try:
        return importlib.util.find_spec(top) is not None
    except (ImportError, ValueError):
        return False


def closure(roots: list[str]) -> tuple[dict[str, md.Distribution | None], list[str]]:
    """All distributions needed by ``roots`` (recursively), and the names not installed.
    A root that is importable but has no metadata maps to None (see FALLBACK_REQUIRES)."""
    found: dict[str, md.Distribution | None] = {}
    missing: list[str] = []
    seen_extras: dict[str, set[str]] = {}
    todo: list[tuple[str, set[str]]] = [(r, set()) for r in roots]
    while todo:
        name, extras = todo.pop()
        key = _norm(name)
        old = seen_extras.get(key)
        if old is not None and extras <= old:
            continue
        seen_extras[key] = (old or set()) | extras
        dist = found.get(key) or find_dist(name)
        if dist is None:
            if key in FALLBACK_REQUIRES and _importable(key):
                # a source checkout on sys.path, never installed: its package directory
                # (measured by measure()) plus the requirements it is known to have
                found.setdefault(key, None)
                todo += [(r, set()) for r in FALLBACK_REQUIRES[key]]
            elif key not in missing:
                missing.append(key)
            continue
        found[key] = dist
        reqs = dist.requires
        if reqs is None and key in FALLBACK_REQUIRES:
            reqs = FALLBACK_REQUIRES[key]
        for text in reqs or []:
            parsed = _parse_requirement(text, seen_extras[key])
            if parsed:
                todo.append(parsed)
    return found, missing


# ----------------------------------------------------------------------------- files


def _editable(dist: md.Distribution) -> bool:
    try:
        info = json.loads(dist.read_text("direct_url.json") or "{}")
    except ValueError:
        return False
    return bool(info.get("dir_info", {}).get("editable"))


def _top_level(dist: md.Distribution) -> list[str]:
    names = (dist.read_text("top_level.txt") or "").split()
    if not names:
        pkgs = md.packages_distributions()
        want = _norm(dist.metadata["Name"])
        names = [m for m, ds in pkgs.items() if any(_norm(d) == want for d in ds)]
    return sorted(set(names))


def _source_files(dist: md.Distribution) -> list[Path]:
    """Files of an editable install: its top-level packages in the source tree."""
    return _package_files(_top_level(dist))


def _package_files(tops: list[str]) -> list[Path]:
    """Files of the importable top-level packages/modules ``tops`` (bytecode only for
    this interpreter)."""
    tag = sys.implementation.cache_tag
    out = []
    for top in tops:
        try:
            spec = importlib.util.find_spec(top)
        except (ImportError, ValueError):
            spec = None
        if spec is None:
            continue
        locs = list(spec.submodule_search_locations or [])
        if not locs and spec.origin:
            out.append(Path(spec.origin))
            continue
        for loc in locs:
            for dirpath, dirnames, filenames in os.walk(loc):
                dirnames[:] = [d for d in dirnames if not d.startswith(".")]
                in_cache = os.path.basename(dirpath) == "__pycache__"
                for fn in filenames:
                    if in_cache and f".{tag}." not in fn:
                        continue  # stale bytecode of other interpreters
                    out.append(Path(dirpath, fn))
    return out


def dist_files(dist: md.Distribution) -> list[Path]:
    files = [Path(dist.locate_file(f)) for f in (dist.files or [])]
    if _editable(dist) or not files:
        files += _source_files(dist)
    return files


def measure(roots: list[str]) -> dict:
    """Bytes on disk of ``roots`` and their requirement closure."""
    dists, missing = closure(roots)
    seen: set[tuple[int, int]] = set()
    per: dict[str, dict] = {}
    total = blocks = nfiles = 0
    for key, dist in sorted(dists.items()):
        size = blk = n = 0
        files = (
            dist_files(dist)
            if dist is not None
            else _package_files(FALLBACK_TOP_LEVEL.get(key, [key]))
        )
        for p in files:
            try:
                st = os.stat(p)
            except OSError:
                continue
            if not os.path.isfile(p) or (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
            size += st.st_size
            blk += st.st_blocks * 512
            n += 1
        per[key] = {
            "version": dist.version if dist is not None else "source (no metadata)",
            "mib": size / MIB,
            "files": n,
            "editable": dist is None or _editable(dist),
        }
        total += size
        blocks += blk
        nfiles += n
    return {
        "roots": roots,
        "mib": total / MIB,
        "disk_usage_mib": blocks / MIB,
        "files": nfiles,
        "distributions": len(dists),
        "missing": missing,
        "per_distribution": dict(sorted(per.items(), key=lambda kv: -kv[1]["mib"])),
    }


def roots_for_module(module: str) -> list[str]:
    """Distribution(s) that provide the importable ``module`` (by top-level name)."""
    top = module.split(".")[0]
    dists = md.packages_distributions().get(top) or [top]
    return sorted({_norm(d) for d in dists})


def main(argv=None) -> int:
    args = sys.argv[1:] if argv is None else argv
    res = measure([_norm(a) for a in args] or roots_for_module("actorflow"))
    print(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
