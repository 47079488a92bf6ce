"""Ray's ``ray.experimental`` names that actorflow has (``state.api``, Ray's older home of the
state API, now ``actorflow.util.state``)."""
