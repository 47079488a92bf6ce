"""The stdlib's ``multiprocessing.Pool`` on actors spread over the cluster (Ray's
``ray.util.multiprocessing``): ``from actorflow.util.multiprocessing import Pool``.
``TimeoutError`` and ``JoinableQueue`` are the stdlib's, re-exported as Ray does."""

from multiprocessing import JoinableQueue, TimeoutError

from actorflow.util.multiprocessing.pool import Pool
from actorflow.util.multiprocessing.results import AsyncResult, IMapIterator, MapResult

__all__ = ["AsyncResult", "IMapIterator", "JoinableQueue", "MapResult", "Pool", "TimeoutError"]
