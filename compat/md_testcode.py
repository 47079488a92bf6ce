"""Turn the ```{testcode} blocks of a MyST page into one script, the way Ray's doctest runs them.

    python compat/md_testcode.py async_api.md /work/compat/ray_docs/md_async_api.py

Blocks are kept in page order and joined by one blank line. A block's leading option lines
(``:hide:``, ``:options: ...``) are dropped with the blank line after them; a block marked
``:skipif: True`` is left out, since the docs never run it either. The page itself is fetched
by hand (see compat/README.md); this only reads a file and writes a file.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

OPEN = "```{testcode}"
CLOSE = "```"
OPTION = re.compile(r"^:([a-z_-]+):\s*(.*)$")


def testcode_blocks(page: str) -> list[str]:
    """The bodies of the page's runnable testcode blocks, in order."""
    blocks: list[str] = []
    lines = page.splitlines()
    i = 0
    while i < len(lines):
        if lines[i].strip() != OPEN:
            i += 1
            continue
        i += 1
        options: dict[str, str] = {}
        while i < len(lines) and (match := OPTION.match(lines[i].strip())):
            options[match.group(1)] = match.group(2).strip()
            i += 1
        if options and i < len(lines) and not lines[i].strip():
            i += 1  # the blank line that ends the option list
        body: list[str] = []
        while i < len(lines) and lines[i].strip() != CLOSE:
            body.append(lines[i])
            i += 1
        if i == len(lines):
            raise ValueError(f"a {OPEN} block is not closed by {CLOSE}")
        i += 1
        if options.get("skipif", "").lower() != "true":
            blocks.append("\n".join(body).rstrip("\n"))
    return blocks


def page_to_script(page: str) -> str:
    blocks = testcode_blocks(page)
    if not blocks:
        raise ValueError(f"the page has no runnable {OPEN} block")
    return "\n\n".join(blocks) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("page", type=Path, help="a MyST .md page")
    parser.add_argument("script", type=Path, help="the .py file to write")
    args = parser.parse_args(argv)
    try:
        script = page_to_script(args.page.read_text(encoding="utf-8"))
    except ValueError as problem:
        print(f"{args.page}: {problem}", file=sys.stderr)
        return 1
    args.script.write_text(script, encoding="utf-8")
    print(f"{args.script}: {len(testcode_blocks(args.page.read_text(encoding='utf-8')))} blocks")
    return 0


if __name__ == "__main__":
    sys.exit(main())
