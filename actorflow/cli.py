"""The ``actorflow`` command line: ``start``, ``stop``, ``status``, ``list``, ``memory``,
``summary``, ``logs`` and ``timeline``.

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

_ADDRESS_HELP = (
    "the cluster's GCS address, HOST:PORT (default: the latest running session on "
    "this machine, found under ACTORFLOW_SESSION_ROOT); the token comes from "
    "ACTORFLOW_TOKEN, else from that cluster's session directory on this machine"
)
_FORMAT_HELP = "a table (default), or JSON"


# -- status ---------------------------------------------------------------------------------------

_STATUS_HELP = (
    "show the cluster at a glance: its nodes (alive, or dead and why; the head), their "
    "resources used/total (as each node last reported to the GCS), actors by state, and tasks: "
    "the workers leased to run tasks and the lease requests queued on the nodes (tasks waiting "
    "for a worker or resources). Single tasks: `actorflow list tasks` and `actorflow summary "
    "tasks`."
)


def _status_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = _STATUS_HELP
    parser.add_argument("--address", default=None, help=_ADDRESS_HELP)
    parser.add_argument("--format", choices=["table", "json"], default="table", help=_FORMAT_HELP)


def cmd_status(args: argparse.Namespace) -> int:
    from actorflow.util import state

    status = state.json_view("status", args.address)
    if args.format == "json":
        print(json.dumps(status, indent=2))
    else:
        print(state.format_status(status))
    return 0


# -- list -----------------------------------------------------------------------------------------


class Listing(NamedTuple):
    help: str
    view: str  # its rows: actorflow.util.state.json_view(view), the dashboard's /api/<view>
    columns: str  # the name of its table's columns in actorflow.util.state ("" for objects)


_LISTINGS: dict[str, Listing] = {
    "nodes": Listing(
        "the nodes the GCS knows, dead ones too: id, address, head or not, "
        "resources used/total, worker processes, leases, queued lease requests, "
        "state (a dead node's with its cause)",
        "nodes",
        "NODE_COLUMNS",
    ),
    "actors": Listing(
        "the actors the GCS knows, dead ones too: id, class, name, namespace, "
        "state, node, pid, restarts, death cause",
        "actors",
        "ACTOR_COLUMNS",
    ),
    "jobs": Listing(
        "the drivers' jobs, finished ones too: id, status, start and end, driver",
        "jobs",
        "JOB_COLUMNS",
    ),
    "supervisors": Listing(
        "the supervisors (actorflow.supervision), each tree from its root: state, "
        "strategy, children running, restarts, the latest event (the children and their "
        "restart history are in the JSON)",
        "supervisors",
        "SUPERVISOR_COLUMNS",
    ),
    "leases": Listing(
        "the workers leased to run tasks (not those hosting actors), one row per "
        "lease: worker, node, pid, job. A lease runs the tasks of one owner, one or "
        "several in turn (single tasks: `list tasks`; queued lease requests: see "
        "`list nodes`)",
        "leases",
        "TASK_COLUMNS",
    ),
    "workers": Listing(
        "every worker process on the live nodes: worker, node, pid, state "
        "(starting, idle, leased), job, the actor it hosts",
        "workers",
        "WORKER_COLUMNS",
    ),
    "objects": Listing(
        "the objects in the cluster: where each lives, its size, its owner and "
        "refs (as `actorflow memory`)",
        "objects",
        "",
    ),
}


def _list_arguments(parser: argparse.ArgumentParser) -> None:
    kinds = parser.add_subparsers(dest="kind", metavar="WHAT", required=True)
    _list_tasks_arguments(kinds)
    for name, listing in _LISTINGS.items():
        sub = kinds.add_parser(name, help=listing.help, description=f"List {listing.help}.")
        sub.add_argument("--address", default=None, help=_ADDRESS_HELP)
        sub.add_argument(
            "--format",
            choices=["table", "json"],
            default="table",
            help=_FORMAT_HELP + " (a list of rows)",
        )


def cmd_list(args: argparse.Namespace) -> int:
    from actorflow.util import state

    if args.kind == "tasks":
        return _cmd_list_tasks(args)
    listing = _LISTINGS[args.kind]
    if args.format == "json":
        print(json.dumps(state.json_view(listing.view, args.address), indent=2))
    elif listing.columns:
        rows = state.json_view(listing.view, args.address)
        print(state.format_table(rows, getattr(state, listing.columns)))
        print(f"{len(rows)} {args.kind}")
    else:
        print(state.memory_summary(args.address))
    return 0


# -- tasks: list, summary, timeline (from task events) ----------------------------------------

_LIST_TASKS_HELP = (
    "the tasks and actor calls, one row per attempt, from the task events their owners "
    "report: ended ones (FINISHED or FAILED, with the error type), oldest first, then those "
    "not ended yet (PENDING_ARGS_AVAIL, PENDING_NODE_ASSIGNMENT, SUBMITTED_TO_WORKER, "
    "RUNNING): id, attempt, name, state, type, job, actor, node, worker pid, error type. "
    "Calls made with enable_task_events=False are not listed; events dropped because a "
    "buffer was full are counted below the table. (The workers leased to run tasks: "
    "`list leases`.)"
)


def _list_tasks_arguments(kinds: argparse._SubParsersAction) -> None:
    sub = kinds.add_parser("tasks", help=_LIST_TASKS_HELP, description=f"List {_LIST_TASKS_HELP}.")
    sub.add_argument("--address", default=None, help=_ADDRESS_HELP)
    sub.add_argument("--state", default=None, help="only attempts in this state, e.g. FAILED")
    sub.add_argument("--name", default=None, help="only this function or Class.method")
    sub.add_argument("--job", default=None, metavar="JOB_ID", help="only this job's")
    sub.add_argument("--limit", type=int, default=100, help="at most this many rows (default 100)")
    sub.add_argument(
        "--format", choices=["table", "json"], default="table", help=_FORMAT_HELP + " (rows)"
    )


def _cmd_list_tasks(args: argparse.Namespace) -> int:
    from actorflow.util import state

    if args.format == "json":
        rows_json, dropped = state.listings.task_rows(
            args.address, state=args.state, name=args.name, job=args.job, limit=args.limit
        )
        print(json.dumps(rows_json, indent=2))
        if dropped:
            print(f"{dropped} task event(s) dropped: not listed", file=sys.stderr)
        return 0
    rows, dropped = state.task_attempts(
        args.address, state=args.state, name=args.name, job=args.job, limit=args.limit
    )
    print(state.format_task_attempts(rows, dropped))
    return 0


def _summary_arguments(parser: argparse.ArgumentParser) -> None:
    kinds = parser.add_subparsers(dest="kind", metavar="WHAT", required=True)
    sub = kinds.add_parser(
        "tasks",
        help="the tasks and actor calls counted per function (or method) and state",
        description="Count the tasks and actor calls per function (or Class.method) and "
        "state, as `ray summary tasks` (each task once, in the state of its latest attempt).",
    )
    sub.add_argument("--address", default=None, help=_ADDRESS_HELP)
    sub.add_argument("--format", choices=["table", "json"], default="table", help=_FORMAT_HELP)


def cmd_summary(args: argparse.Namespace) -> int:
    from actorflow.util import state

    summary = state.json_view("task_summary", args.address)
    if args.format == "json":
        print(json.dumps(summary, indent=2))
    else:
        print(state.format_task_summary(summary))
    return 0


def _timeline_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--address", default=None, help=_ADDRESS_HELP)
    parser.add_argument(
        "--output",
        default=None,
        metavar="FILE",
        help="where to write it (default: actorflow-timeline-<date>.json in the temp directory)",
    )


def cmd_timeline(args: argparse.Namespace) -> int:
    import os
    import tempfile
    import time

    from actorflow.util import state

    events = state.json_view("timeline", args.address)
    path = args.output or os.path.join(
        tempfile.gettempdir(), time.strftime("actorflow-timeline-%Y-%m-%d_%H-%M-%S.json")
    )
    with open(path, "w") as f:
        json.dump(events, f)
    ran = sum(1 for e in events if e["ph"] == "X")
    print(f"Wrote {ran} task attempt(s) to {path}: open it in chrome://tracing or Perfetto")
    return 0


# -- memory -------------------------------------------------------------------------------------


def _memory_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--address", default=None, help=_ADDRESS_HELP)
    parser.add_argument(
        "--format",
        choices=["table", "json"],
        default="table",
        help="a table with a line of totals (default), or JSON rows",
    )
    parser.add_argument(
        "--stats",
        action="store_true",
        help="only the object store's figures (bytes used, capacity, objects, spilled), "
        "summed over the nodes",
    )


def cmd_memory(args: argparse.Namespace) -> int:
    from actorflow.util import state

    if args.stats:
        stats = state.json_view("object_store", args.address)
        if args.format == "json":
            print(json.dumps(stats, indent=2))
        else:
            print("\n".join(f"{key}: {value}" for key, value in stats.items()))
    elif args.format == "json":
        print(json.dumps(state.json_view("objects", args.address), indent=2))
    else:
        print(state.memory_summary(args.address))
    return 0


# -- logs ---------------------------------------------------------------------------------------

_LOGS_HELP = (
    "read the log file of a worker (its stdout and stderr) or node on any node, through the "
    "cluster: an actor's (--actor ID or NAME), the worker's that ran a task (--task ID), a "
    "worker's (--pid), or a file by name (FILENAME, on --node or the head's node); with none of "
    "them, list the log files of every node (or --node's)"
)


def _logs_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = _LOGS_HELP
    parser.add_argument("filename", nargs="?", default=None, help="a log file's name")
    parser.add_argument("--address", default=None, help=_ADDRESS_HELP)
    parser.add_argument("--node", default=None, metavar="NODE_ID", help="the node (an id prefix)")
    parser.add_argument("--actor", default=None, metavar="ID|NAME", help="an actor's log")
    parser.add_argument("--task", default=None, metavar="TASK_ID", help="a task's worker's log")
    parser.add_argument("--pid", type=int, default=None, help="the log of the worker with pid")
    parser.add_argument(
        "--follow", "-f", action="store_true", help="go on printing what is written (Ctrl-C ends)"
    )
    parser.add_argument(
        "--tail",
        type=int,
        default=1000,
        metavar="N",
        help="print the last N lines (default 1000; -1: the whole file)",
    )
    parser.add_argument(
        "--format", choices=["table", "json"], default="table", help="the listing: " + _FORMAT_HELP
    )


def cmd_logs(args: argparse.Namespace) -> int:
    from actorflow.util import state

    if not (args.filename or args.actor or args.task or args.pid):
        rows = state.json_view("logs", args.address, node=args.node)
        if args.format == "json":
            print(json.dumps(rows, indent=2))
        else:
            print(state.format_table(rows, state.LOG_COLUMNS))
            print(f"{len(rows)} log file(s)")
        return 0
    pieces = state.get_log(
        args.address,
        node_id=args.node,
        filename=args.filename,
        actor_id=args.actor,
        task_id=args.task,
        pid=args.pid,
        follow=args.follow,
        tail=args.tail,
        errors="replace",
    )
    for piece in pieces:
        sys.stdout.write(piece)
        sys.stdout.flush()
    return 0


# -- start / stop --------------------------------------------------------------------------------


def _start_arguments(parser: argparse.ArgumentParser) -> None:
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument(
        "--head", action="store_true", help="start a new cluster: its GCS and its first node"
    )
    where.add_argument("--address", help="join the cluster whose head is at HOST:PORT")
    parser.add_argument(
        "--port", type=int, default=6380, help="the head's port (default 6380; 0 picks a free one)"
    )
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="the interface to listen on, as others reach it (default "
        "127.0.0.1: this machine only)",
    )
    parser.add_argument(
        "--num-cpus",
        type=float,
        default=None,
        help="CPUs this node offers (default: the machine's count)",
    )
    parser.add_argument(
        "--num-gpus", type=float, default=None, help="GPUs this node offers (default 0)"
    )
    parser.add_argument(
        "--resources", default="{}", help="custom resources as JSON, e.g. '{\"accelerator\": 2}'"
    )
    parser.add_argument(
        "--memory",
        type=int,
        default=None,
        metavar="BYTES",
        help="the node's `memory` resource, what tasks and actors ask for with memory=... "
        "(default: 70%% of the machine's RAM; in a container, give its memory limit)",
    )
    parser.add_argument(
        "--object-store-memory",
        type=int,
        default=0,
        metavar="BYTES",
        help="shared memory for objects (default: 30%% of RAM)",
    )
    parser.add_argument(
        "--metrics-export-port",
        "--metrics-port",
        type=int,
        default=0,
        metavar="PORT",
        help="the port this node serves Prometheus metrics on, at http://HOST:PORT/metrics "
        "on its --host (default 0: a free port; `actorflow list nodes` shows it). The "
        "head's GCS serves its own on a free port",
    )
    parser.add_argument(
        "--storage",
        default="",
        metavar="URL",
        help="with --head: where the GCS keeps its tables, sqlite:///PATH or "
        "redis://HOST:PORT/DB (default: SQLite in the session directory). "
        "Starting a head again on the port of one whose GCS died resumes "
        "that cluster from its tables",
    )
    parser.add_argument(
        "--tls",
        action="store_true",
        default=None,
        help="with --head: every connection between the cluster's processes runs TLS 1.3 "
        "with certificates of a CA made for this cluster (in the session directory); a "
        "node or driver joining from another machine needs ACTORFLOW_TLS=1 (or --tls) and "
        "the token, and gets its certificate from the head. Default: ACTORFLOW_TLS",
    )
    parser.add_argument(
        "--token-file",
        default="",
        metavar="PATH",
        help="the cluster token (hex) in a file, e.g. a mounted Kubernetes Secret: a head "
        "uses it instead of a new one, a node joins with it. The processes read it from "
        "the file; it is never put on a command line or in an environment variable "
        "(default: ACTORFLOW_TOKEN, else the head's session directory on this machine)",
    )
    parser.add_argument(
        "--block",
        action="store_true",
        help="stay in the foreground with the node (and a head's GCS): SIGTERM drains the "
        "node and exits 0; the exit code is non-zero when the node (or the GCS) dies",
    )
    parser.add_argument(
        "--drain-grace-seconds",
        type=float,
        default=25.0,
        metavar="SECONDS",
        help="on SIGTERM the node drains: no new leases or actors come to it, and its "
        "running tasks get this long to finish before they are ended (and retried "
        "elsewhere by their owners); 0 ends it at once (default 25, under Kubernetes' "
        "30 s terminationGracePeriodSeconds)",
    )
    parser.add_argument(
        "--gcs-metrics-port",
        type=int,
        default=0,
        metavar="PORT",
        help="with --head: the port the GCS serves its /metrics and /healthz on (default 0: "
        "a free port)",
    )
    parser.add_argument(
        "--include-dashboard",
        type=_yes_no,
        default=True,
        metavar="true|false",
        help="with --head: serve the web dashboard (default true)",
    )
    parser.add_argument(
        "--no-dashboard",
        dest="include_dashboard",
        action="store_false",
        help="with --head: no web dashboard",
    )
    parser.add_argument(
        "--dashboard-host",
        default="127.0.0.1",
        help="the interface the dashboard listens on (default 127.0.0.1: this machine only)",
    )
    parser.add_argument(
        "--dashboard-port",
        type=int,
        default=None,
        metavar="PORT",
        help="the dashboard's port (default 8265, or a free one if that is taken; 0: a free one)",
    )


def _yes_no(text: str) -> bool:
    value = text.strip().lower()
    if value in ("true", "1", "yes", "on"):
        return True
    if value in ("false", "0", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def cmd_start(args: argparse.Namespace) -> int:
    from actorflow._private.cluster.launcher import start_node
    from actorflow._private.config import Config

    try:
        resources = json.loads(args.resources)
        if not isinstance(resources, dict):
            raise ValueError("not a JSON object")
    except ValueError as exc:
        print(
            f"actorflow start: --resources must be a JSON object such as "
            f"'{{\"accelerator\": 2}}' ({exc})",
            file=sys.stderr,
        )
        return 2
    if args.memory is not None:
        if args.memory < 0:
            print(
                f"actorflow start: --memory must be 0 or more, got {args.memory}", file=sys.stderr
            )
            return 2
        resources["memory"] = float(args.memory)
    for flag, port in (
        ("--metrics-export-port", args.metrics_export_port),
        ("--gcs-metrics-port", args.gcs_metrics_port),
    ):
        if not 0 <= port <= 65535:
            print(f"actorflow start: {flag} must be 0-65535, got {port}", file=sys.stderr)
            return 2
    if args.drain_grace_seconds < 0:
        print(
            f"actorflow start: --drain-grace-seconds must be 0 or more, got "
            f"{args.drain_grace_seconds:g}",
            file=sys.stderr,
        )
        return 2
    if args.dashboard_port is not None and not 0 <= args.dashboard_port <= 65535:
        print(
            f"actorflow start: --dashboard-port must be 0-65535, got {args.dashboard_port}",
            file=sys.stderr,
        )
        return 2
    dashboard = (
        {"host": args.dashboard_host, "port": args.dashboard_port}
        if args.head and args.include_dashboard
        else None
    )
    info = start_node(
        head=args.head,
        address=args.address or "",
        host=args.host,
        port=args.port,
        num_cpus=args.num_cpus,
        num_gpus=args.num_gpus,
        resources=resources,
        object_store_memory=args.object_store_memory,
        storage=args.storage,
        metrics_export_port=args.metrics_export_port,
        session_root=Config.from_env().session_root,
        tls=args.tls,
        token_file=args.token_file,
        drain_grace_seconds=args.drain_grace_seconds,
        gcs_metrics_port=args.gcs_metrics_port,
        dashboard=dashboard,
    )
    gcs = str(info["gcs_address"]).split("://")[-1]
    what = "head node" if args.head else "node"
    if info.get("resumed"):
        print(
            f"Resumed the cluster whose GCS had died: the {what} {info['node_id']} (pid "
            f"{info['pid']}) still runs at {info['address'].split('://')[-1]} and reconnects."
        )
    else:
        print(
            f"Started the {what} {info['node_id']} (pid {info['pid']}) at "
            f"{info['address'].split('://')[-1]}, resources {json.dumps(info['resources'])}."
        )
    print(f"Session directory: {info['session_dir']} (logs, token)")
    if info.get("tls"):
        print("TLS: on, with the cluster CA's certificates in the session's tls/ directory.")
    metrics = [f"http://{info['metrics_address']}/metrics"] if info.get("metrics_address") else []
    if args.head and (info.get("gcs") or {}).get("metrics_address"):
        metrics.append(f"http://{info['gcs']['metrics_address']}/metrics (the GCS)")
    if metrics:
        print("Prometheus metrics at " + ", ".join(metrics))
    if args.head and info.get("gcs"):
        print(f"GCS (pid {info['gcs']['pid']}) at {gcs}, tables in {info['gcs']['storage']}.")
    if info.get("dashboard"):
        token_file = f"{info['session_dir']}/token"
        print(
            f"Dashboard at {info['dashboard']['url']} (log in with the cluster token: the "
            f"contents of {token_file})"
        )
    if args.head:
        print("Connect a driver on this machine with:")
        print(f'    actorflow.init(address="{gcs}")   (or address="auto")')
        print("Add a node with:")
        print(f"    actorflow start --address {gcs}")
        print(
            "A driver or node on another machine needs the token: ACTORFLOW_TOKEN=<the "
            "session's token file>."
            + (
                " With TLS, also ACTORFLOW_TLS=1 (its certificate comes from the head)."
                if info.get("tls")
                else ""
            )
        )
    if args.block:
        from actorflow._private.cluster.foreground import block

        print("Running in the foreground (--block): SIGTERM drains the node and stops.")
        sys.stdout.flush()
        return block(info, args.drain_grace_seconds)
    print("Stop every node on this machine with: actorflow stop")
    return 0


def _stop_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--grace",
        type=float,
        default=5.0,
        help="seconds to wait after SIGTERM before SIGKILL (default 5)",
    )


def cmd_stop(args: argparse.Namespace) -> int:
    from actorflow._private.cluster.launcher import stop_dashboards, stop_nodes
    from actorflow._private.config import Config

    root = Config.from_env().session_root
    dashboards = stop_dashboards(root, grace=args.grace)
    stopped = stop_nodes(root, grace=args.grace)
    print(
        f"Stopped {len(stopped)} actorflow node process(es)"
        + (f": pids {', '.join(str(p) for p in stopped)}." if stopped else ".")
    )
    if dashboards:
        print(f"Stopped the dashboard (pid {', '.join(str(p) for p in dashboards)}).")
    return 0


# -- the command table ----------------------------------------------------------------------------


class Command(NamedTuple):
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


_COMMANDS: dict[str, Command] = {
    "start": Command(
        "start a head node (--head) or a node that joins one (--address), in the background "
        "(or in the foreground with --block)",
        _start_arguments,
        cmd_start,
    ),
    "stop": Command(
        "stop every actorflow node this user started on this machine (and their workers)",
        _stop_arguments,
        cmd_stop,
    ),
    "status": Command(
        "show the cluster's nodes, their resources used/total, its actors by "
        "state and its task leases",
        _status_arguments,
        cmd_status,
    ),
    "list": Command(
        "list the cluster's nodes, actors, tasks (from task events), leases (workers "
        "leased for tasks), workers or objects, as a table or JSON",
        _list_arguments,
        cmd_list,
    ),
    "memory": Command(
        "list the cluster's objects: where each lives, its size, its refs",
        _memory_arguments,
        cmd_memory,
    ),
    "summary": Command(
        "count the tasks and actor calls per function and state (`summary tasks`)",
        _summary_arguments,
        cmd_summary,
    ),
    "logs": Command(
        "print a worker's or node's log from any node (--actor, --task, --pid, FILENAME), "
        "--follow it, or list the log files",
        _logs_arguments,
        cmd_logs,
    ),
    "timeline": Command(
        "write the task events as a Chrome trace (chrome://tracing, Perfetto): a row per "
        "node, a line per worker",
        _timeline_arguments,
        cmd_timeline,
    ),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="actorflow", description="Inspect and manage actorflow clusters."
    )
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
    except (
        ConnectionError,
        exceptions.AuthenticationError,
        exceptions.ActorflowError,
        ValueError,
    ) as exc:
        print(f"actorflow {args.command}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
