"""Every actorflow process raises its soft limit of open files to the hard one, as Ray does.

Each shared-memory object a process maps holds an fd while it is mapped (Python's mmap keeps a
duplicate of the fd before 3.13), and a node's store holds one per segment: the common soft
default of 1,024 would stop a ``get`` of a thousand objects.
"""

from __future__ import annotations

import errno
import logging

logger = logging.getLogger("actorflow")

try:
    import resource
except ImportError:  # not on this platform: nothing to raise
    resource = None  # type: ignore[assignment]


def raise_open_file_limit() -> int:
    """Soft RLIMIT_NOFILE up to the hard limit; returns the soft limit now in force."""
    if resource is None:
        return -1
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft == resource.RLIM_INFINITY or soft >= hard:
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError) as exc:
        logger.debug("could not raise the open-file limit from %d to %d: %s", soft, hard, exc)
        return soft
    return hard


def open_file_limit() -> int:
    if resource is None:
        return -1
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def is_out_of_fds(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in (errno.EMFILE, errno.ENFILE)
