"""The wire protocol: every message between actorflow's actors, typed, and the reply codes.

One module per receiving actor names the messages it handles: ``core`` (every process's core
worker), ``worker`` (a worker's task executor and actor host), ``raylet``, ``store`` (a node's
object store), ``gcs``, ``actors`` and ``placement_groups`` (the control store, its actor
manager and its placement-group table). A message is a NamedTuple, so it travels as a
compact msgpack array; a handler reads its payload through ``decode``, which checks the shape
and names the message and field when it is wrong (MalformedMessageError, answered to the
sender like any handler error).
"""
