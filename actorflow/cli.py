"""The ``actorflow`` command line: ``actorflow memory`` (more subcommands to come).

Each subcommand is a function ``cmd_<name>(args) -> int`` registered in ``_COMMANDS`` with a
function that adds its arguments to its parser. Errors a user can act on (no cluster, wrong
token) print one line on stderr and exit with status 1.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from typing import NamedTuple

from actorflow import exceptions

_ADDRESS_HELP = ("the cluster's GCS address, HOST:PORT (default: the latest session on this "
                 "machine, found under ACTORFLOW_SESSION_ROOT; the token comes from "
                 "ACTORFLOW_TOKEN or that session)")


# -- memory -------------------------------------------------------------------------------------


def _memory_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--address", default=None, help=_ADDRESS_HELP)
    parser.add_argument("--format", choices=["table", "json"], default="table",
                        help="a table with a line of totals (default), or JSON rows")


def cmd_memory(args: argparse.Namespace) -> int:
    from actorflow.util import state

    if args.format == "json":
        print(json.dumps(state.list_objects(args.address), indent=2))
    else:
        print(state.memory_summary(args.address))
    return 0


# -- the command table ----------------------------------------------------------------------------


class Command(NamedTuple):
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


_COMMANDS: dict[str, Command] = {
    "memory": Command("list the cluster's objects: where each lives, its size, its refs",
                      _memory_arguments, cmd_memory),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="actorflow", description="Inspect and manage actorflow clusters.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, command in _COMMANDS.items():
        sub = commands.add_parser(name, help=command.help, description=command.help)
        command.add_arguments(sub)
        sub.set_defaults(run=command.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        code: int = args.run(args)
    except (ConnectionError, exceptions.AuthenticationError) as exc:
        print(f"actorflow {args.command}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
