"""gitignore-style patterns, for runtime_env ``excludes`` and a package's ``.gitignore``.

The rules of https://git-scm.com/docs/gitignore that matter here: blank lines and ``#`` comments
are skipped; ``!`` re-includes; a trailing ``/`` matches directories only; a pattern with a ``/``
at its start or middle is relative to the package's root, one without matches a name at any
depth; ``*`` and ``?`` stop at ``/``, ``**`` crosses directories; the last matching pattern wins.
A directory that is excluded is not entered.
"""

from __future__ import annotations

import re


class Excluder:
    def __init__(self, patterns: list[str], gitignore: str | None = None) -> None:
        lines = list(patterns)
        if gitignore is not None:
            try:
                with open(gitignore) as f:
                    lines = f.read().splitlines() + lines  # excludes come last: they win
            except OSError:
                pass
        self.rules = [rule for line in lines if (rule := _compile(line)) is not None]

    def excluded(self, rel: str, is_dir: bool) -> bool:
        """Whether the path (relative to the root, with ``/``) is left out."""
        name = rel.rsplit("/", 1)[-1]
        verdict = False
        for regex, negated, dir_only, anchored in self.rules:
            if dir_only and not is_dir:
                continue
            if regex.fullmatch(rel if anchored else name):
                verdict = not negated
        return verdict


def _compile(line: str) -> tuple[re.Pattern, bool, bool, bool] | None:
    pattern = line.rstrip()
    if not pattern or pattern.startswith("#"):
        return None
    negated = pattern.startswith("!")
    if negated:
        pattern = pattern[1:]
    dir_only = pattern.endswith("/")
    pattern = pattern.rstrip("/")
    anchored = "/" in pattern
    pattern = pattern.lstrip("/")
    if not pattern:
        return None
    return re.compile(_translate(pattern)), negated, dir_only, anchored


def _translate(glob: str) -> str:
    out, i = [], 0
    while i < len(glob):
        c = glob[i]
        if glob.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif glob.startswith("/**", i) and i + 3 == len(glob):
            out.append("(?:/.*)?")
            i += 3
        elif glob.startswith("**", i):
            out.append(".*")
            i += 2
        elif c == "*":
            out.append("[^/]*")
            i += 1
        elif c == "?":
            out.append("[^/]")
            i += 1
        elif c == "[":
            end = glob.find("]", i + 1)
            if end == -1:
                out.append(re.escape(c))
                i += 1
            else:
                body = glob[i + 1 : end].replace("\\", "\\\\")
                if body.startswith("!"):
                    body = "^" + body[1:]
                out.append(f"[{body}]")
                i = end + 1
        else:
            out.append(re.escape(c))
            i += 1
    return "".join(out)
