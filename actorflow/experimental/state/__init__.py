"""``ray.experimental.state``: Ray's older home of the state API (``actorflow.util.state``)."""
