"""ObjectRef: a reference to a value that exists, or will, somewhere in the cluster.

A ref names its object and its owner (the process that made it). It is awaitable from any event
loop, and ``future()`` gives a ``concurrent.futures.Future``. Cancelling an asyncio task that is
awaiting a ref cancels the remote task behind it.
"""

from actorflow._private.worker.object_ref import (
    DynamicObjectRefGenerator,
    ObjectRef,
    ObjectRefGenerator,
)

__all__ = ["DynamicObjectRefGenerator", "ObjectRef", "ObjectRefGenerator"]
