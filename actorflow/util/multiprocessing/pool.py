"""``Pool``: the stdlib's ``multiprocessing.pool.Pool`` API on actors spread over the cluster
(Ray's ``ray.util.multiprocessing.Pool``).

Each of the pool's ``processes`` is an actor (a worker process of its own); work goes to them in
batches of ``chunksize`` items, one actor call per batch, to the actor with the fewest batches
in flight. One result thread per pool takes the batches' outcomes as they complete, fills the
results, runs the callbacks and feeds ``imap`` iterators their next batches, so that an
unbounded iterable is read as its results are taken instead of all at once.

The pool's actors hold no CPU while they run (as Ray's actors, which need a CPU only to be
placed) and are spread over the nodes in turn; ``ray_remote_args`` overrides that (for example
``{"num_cpus": 1}``).
"""

from __future__ import annotations

import itertools
import logging
import os
import queue
import threading
import traceback
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import actorflow
from actorflow.util.multiprocessing.results import (
    AsyncResult,
    Batch,
    IMapIterator,
    MapResult,
    Outcome,
)

__all__ = ["Pool"]

logger = logging.getLogger("actorflow.multiprocessing")

RUN, CLOSE, TERMINATE = "RUN", "CLOSE", "TERMINATE"


class RemoteTraceback(Exception):
    """The ``__cause__`` of an exception raised in a pool's process: its remote traceback (as
    the stdlib's ``multiprocessing.pool.RemoteTraceback``)."""

    def __init__(self, tb: str) -> None:
        super().__init__(tb)
        self.tb = tb

    def __str__(self) -> str:
        return self.tb


class PoolActor:
    """One of the pool's processes: runs the initializer once, then batches of calls."""

    def __init__(self, initializer: Callable[..., Any] | None, initargs: tuple) -> None:
        if initializer is not None:
            initializer(*initargs)

    def ping(self) -> int:
        return os.getpid()

    def run_batch(self, func: Callable[..., Any], batch: list[tuple], star: bool) -> list:
        outcomes: list[Outcome] = []
        for args in batch:
            try:
                outcomes.append((True, func(*args) if star else func(args[0])))
            except Exception as exc:  # with its traceback: a cause is not pickled
                tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
                outcomes.append((False, (exc, tb)))
        return outcomes


class _Slot:
    """One process of the pool: its current actor, the batches it was given, in flight."""

    __slots__ = ("actor", "given", "in_flight")

    def __init__(self, actor: Any) -> None:
        self.actor = actor
        self.given = 0
        self.in_flight = 0


_WAKE = object()  # a result-thread wake-up that carries no batch


class Pool:
    """A pool of actor processes with the stdlib ``multiprocessing.Pool`` API.

    processes: how many actors (default: the cluster's CPUs). initializer(*initargs) runs in
    each actor when it starts. maxtasksperchild: an actor is replaced by a new one after that
    many batches. ray_address (or address): the cluster to join when ``actorflow.init()`` was
    not called (default: ``ACTORFLOW_ADDRESS``/``RAY_ADDRESS``, else a new local cluster).
    ray_remote_args: actor options for the pool's actors (``num_cpus``, ``resources``,
    ``scheduling_strategy``, ...). context is accepted for the stdlib's signature and ignored.
    """

    def __init__(
        self,
        processes: int | None = None,
        initializer: Callable[..., Any] | None = None,
        initargs: Iterable[Any] = (),
        maxtasksperchild: int | None = None,
        context: Any = None,
        ray_address: str | None = None,
        ray_remote_args: dict[str, Any] | None = None,
        *,
        address: str | None = None,
    ) -> None:
        if isinstance(processes, bool) or not isinstance(processes, (int, type(None))):
            raise TypeError(f"processes must be an int or None, got {processes!r}")
        if maxtasksperchild is not None and (
            isinstance(maxtasksperchild, bool)
            or not isinstance(maxtasksperchild, int)
            or maxtasksperchild < 1
        ):
            raise ValueError(f"maxtasksperchild must be a positive int, got {maxtasksperchild!r}")
        if initializer is not None and not callable(initializer):
            raise TypeError("initializer must be a callable")
        if ray_address and address and ray_address != address:
            raise ValueError(f"ray_address={ray_address!r} and address={address!r} differ")
        self._processes = self._connect(processes, ray_address or address)
        self._initializer = initializer
        self._initargs = tuple(initargs or ())
        self._maxtasks = maxtasksperchild
        options = {"num_cpus": 0, "scheduling_strategy": "SPREAD", **(ray_remote_args or {})}
        self._actor_class = actorflow.remote(PoolActor).options(**options)
        self._state = RUN
        self._lock = threading.Lock()
        self._outstanding = 0  # batches submitted and not delivered
        # Actors replaced or ended, with their terminate calls (join waits for those).
        self._retiring: list[tuple[Any, Any]] = []
        self._done: queue.SimpleQueue = queue.SimpleQueue()
        self._feeders: set[_Feeder] = set()  # imap inputs not read to the end yet
        self._slots = [_Slot(self._new_actor()) for _ in range(self._processes)]
        # Start them all now: an initializer that fails (or resources that can never be had)
        # is an error of the constructor, not of the first call.
        try:
            actorflow.get([slot.actor.ping.remote() for slot in self._slots])
        except BaseException:
            for slot in self._slots:
                actorflow.kill(slot.actor)
            raise
        self._thread = threading.Thread(
            target=self._handle_results, name="actorflow-pool-results", daemon=True
        )
        self._thread.start()

    @staticmethod
    def _connect(processes: int | None, address: str | None) -> int:
        if not actorflow.is_initialized():
            if address:
                actorflow.init(address=address)
            else:
                actorflow.init(num_cpus=processes)
        cpus = int(actorflow.cluster_resources().get("CPU", 0))
        if processes is None:
            processes = cpus
        if processes <= 0:
            raise ValueError(
                f"Processes in the pool must be >0 (the cluster has {cpus} CPUs)"
                if processes == 0
                else f"processes must be > 0, got {processes}"
            )
        if processes > cpus:
            raise ValueError(
                f"Tried to start a pool with {processes} processes, but the cluster has only "
                f"{cpus} CPUs"
            )
        return processes

    def _new_actor(self) -> Any:
        return self._actor_class.remote(self._initializer, self._initargs)

    # -- submitting -----------------------------------------------------------------------------

    def _check_running(self) -> None:
        if self._state != RUN:
            raise ValueError("Pool not running")

    def _submit(self, result: Any, start: int, func: Callable, items: list, star: bool) -> None:
        """One batch to the slot with the fewest in flight (the pool's lock is held)."""
        slot = min(self._slots, key=lambda s: s.in_flight)
        batch = Batch(result, start, len(items), slot)
        batch.ref = slot.actor.run_batch.remote(func, items, star)
        slot.in_flight += 1
        slot.given += 1
        self._outstanding += 1
        if self._maxtasks is not None and slot.given >= self._maxtasks:
            # The old actor ends after the batches queued on it (calls run in order).
            self._retiring.append((slot.actor, slot.actor.__ray_terminate__.remote()))
            slot.actor, slot.given = self._new_actor(), 0
        batch.ref.future().add_done_callback(lambda future: self._done.put((batch, future)))

    def _start_map(
        self,
        func: Callable,
        iterable: Iterable,
        chunksize: int | None,
        star: bool,
        callback: Callable[[Any], Any] | None,
        error_callback: Callable[[BaseException], Any] | None,
    ) -> MapResult:
        self._check_running()
        items = [tuple(args) if star else (args,) for args in iterable]
        if chunksize is None:  # as the stdlib: about four batches per process
            chunksize, extra = divmod(len(items), len(self._slots) * 4)
            chunksize = max(1, chunksize + (1 if extra else 0))
        _check_chunksize(chunksize)
        result = MapResult(len(items), callback, error_callback)
        with self._lock:
            self._check_running()
            for start in range(0, len(items), chunksize):
                self._submit(result, start, func, items[start : start + chunksize], star)
        return result

    def _start_imap(
        self, func: Callable, iterable: Iterable, chunksize: int, star: bool, ordered: bool
    ) -> IMapIterator:
        self._check_running()
        _check_chunksize(chunksize)
        it = IMapIterator(ordered)
        feeder = _Feeder(it, func, iter(iterable), chunksize, star)
        it.on_take = lambda: self._refill(feeder)
        with self._lock:
            self._check_running()
            self._feeders.add(feeder)
            self._feed(feeder)
        return it

    def _refill(self, feeder: _Feeder) -> None:
        if feeder.source is not None:
            with self._lock:
                self._feed(feeder)

    def _feed(self, feeder: _Feeder) -> None:
        """Submit feeder's next batches while fewer than two batches per process of its
        results are not taken yet (the pool's lock is held): the input is read as results
        are taken, as Ray's imap does, so an endless one is never read ahead without bound.
        Once the pool is closed, the rest of the input is read at once: as the stdlib's, a
        closed pool runs all that was submitted, taken or not."""
        self._feed_batches(feeder)
        if feeder.source is None:
            self._feeders.discard(feeder)

    def _feed_batches(self, feeder: _Feeder) -> None:
        it = feeder.iterator
        ahead = 2 * len(self._slots) * feeder.chunksize
        while feeder.source is not None and (
            self._state == CLOSE or feeder.sent - it.taken < ahead
        ):
            if self._state == TERMINATE:
                error = ValueError("the pool was terminated before these items were sent")
                feeder.fail(error)
                return
            try:
                items = [
                    tuple(args) if feeder.star else (args,)
                    for args in itertools.islice(feeder.source, feeder.chunksize)
                ]
            except Exception as exc:  # reading the input failed: raised at its place
                feeder.fail(exc)
                return
            if not items:
                it._set_length(feeder.sent)
                feeder.source = None
                return
            self._submit(feeder, feeder.sent, feeder.func, items, feeder.star)
            feeder.sent += len(items)

    # -- the stdlib API -------------------------------------------------------------------------

    def apply(self, func: Callable, args: Iterable = (), kwds: dict | None = None) -> Any:
        """func(*args, **kwds) on one of the pool's processes; its result."""
        return self.apply_async(func, args, kwds).get()

    def apply_async(
        self,
        func: Callable,
        args: Iterable = (),
        kwds: dict | None = None,
        callback: Callable[[Any], Any] | None = None,
        error_callback: Callable[[BaseException], Any] | None = None,
    ) -> AsyncResult:
        """func(*args, **kwds) on one of the pool's processes; an ``AsyncResult``."""
        self._check_running()
        call = _Call(func, dict(kwds or {})) if kwds else func
        result = AsyncResult(1, callback, error_callback)
        with self._lock:
            self._check_running()
            self._submit(result, 0, call, [tuple(args)], True)
        return result

    def map(self, func: Callable, iterable: Iterable, chunksize: int | None = None) -> list:
        """[func(x) for x in iterable], run in batches of chunksize items."""
        return self._start_map(func, iterable, chunksize, False, None, None).get()

    def map_async(
        self,
        func: Callable,
        iterable: Iterable,
        chunksize: int | None = None,
        callback: Callable[[Any], Any] | None = None,
        error_callback: Callable[[BaseException], Any] | None = None,
    ) -> MapResult:
        return self._start_map(func, iterable, chunksize, False, callback, error_callback)

    def starmap(self, func: Callable, iterable: Iterable, chunksize: int | None = None) -> list:
        """[func(*args) for args in iterable]."""
        return self._start_map(func, iterable, chunksize, True, None, None).get()

    def starmap_async(
        self,
        func: Callable,
        iterable: Iterable,
        chunksize: int | None = None,
        callback: Callable[[Any], Any] | None = None,
        error_callback: Callable[[BaseException], Any] | None = None,
    ) -> MapResult:
        return self._start_map(func, iterable, chunksize, True, callback, error_callback)

    def imap(self, func: Callable, iterable: Iterable, chunksize: int = 1) -> IMapIterator:
        """func(x) for each x, in input order, as they come."""
        return self._start_imap(func, iterable, chunksize, False, ordered=True)

    def imap_unordered(
        self, func: Callable, iterable: Iterable, chunksize: int = 1
    ) -> IMapIterator:
        """func(x) for each x, in the order they complete."""
        return self._start_imap(func, iterable, chunksize, False, ordered=False)

    def close(self) -> None:
        """No more work may be submitted; the work submitted runs to the end, then the
        processes exit (``join`` waits for that)."""
        with self._lock:
            if self._state != RUN:
                return
            self._state = CLOSE
            for feeder in list(self._feeders):
                self._feed(feeder)
        self._done.put(_WAKE)

    def terminate(self) -> None:
        """Stop the processes now: work not done fails with ``ActorDiedError``."""
        with self._lock:
            if self._state == TERMINATE:
                return
            self._state = TERMINATE
            actors = [slot.actor for slot in self._slots]
            actors += [actor for actor, _ in self._retiring]
        for actor in actors:
            actorflow.kill(actor)
        self._done.put(_WAKE)

    def join(self) -> None:
        """Wait for the work submitted to finish and the processes to exit, after ``close``
        or ``terminate`` (ValueError before)."""
        if self._state == RUN:
            raise ValueError("Pool is still running")
        if threading.current_thread() is self._thread:
            raise RuntimeError("Pool.join() cannot be called from a Pool callback")
        self._thread.join()  # it ends once no work is left
        with self._lock:
            refs = [ref for _, ref in self._retiring]
            self._retiring = []
        if refs and self._state == CLOSE:
            actorflow.wait(refs, num_returns=len(refs))

    def __enter__(self) -> Pool:
        self._check_running()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.terminate()

    def __repr__(self) -> str:
        return f"<Pool state={self._state} pool_size={len(self._slots)}>"

    # -- the result thread ---------------------------------------------------------------------

    def _handle_results(self) -> None:
        """The result thread: it ends once the pool is closed or terminated and no batch is
        left, after asking a closed pool's processes to exit."""
        while True:
            item = self._done.get()
            if item is not _WAKE:
                self._deliver(*item)
            with self._lock:
                if self._state == RUN or self._outstanding:
                    continue
                if self._state == CLOSE and self._feeders:
                    continue
                if self._state == CLOSE:  # each process exits after its last call
                    self._retiring += [
                        (s.actor, s.actor.__ray_terminate__.remote()) for s in self._slots
                    ]
                return

    def _deliver(self, batch: Batch, future: Any) -> None:
        try:
            outcomes = [_raised_remotely(outcome) for outcome in future.result()]
        except Exception as exc:  # the actor died, or the call failed as a whole
            outcomes = [(False, exc)] * batch.count
        batch.result._deliver(batch, outcomes)
        with self._lock:
            batch.slot.in_flight -= 1
            self._outstanding -= 1
            if isinstance(batch.result, _Feeder):
                self._feed(batch.result)


class _Feeder:
    """An imap iterator's input, read a few batches ahead of its results."""

    def __init__(
        self, iterator: IMapIterator, func: Callable, source: Iterator, chunksize: int, star: bool
    ) -> None:
        self.iterator = iterator
        self.func = func
        self.source: Iterator | None = source
        self.chunksize = chunksize
        self.star = star
        self.sent = 0

    def _deliver(self, batch: Batch, outcomes: list[Outcome]) -> None:
        self.iterator._deliver(batch, outcomes)

    def fail(self, error: BaseException) -> None:
        """The rest of the input cannot be run: error is raised after the items sent."""
        self.source = None
        it = self.iterator
        it._deliver(Batch(self, self.sent, 1, None), [(False, error)])
        it._set_length(self.sent + 1)


class _Call:
    """func with keyword arguments, as one picklable callable (apply's kwds)."""

    def __init__(self, func: Callable, kwds: dict) -> None:
        self.func = func
        self.kwds = kwds

    def __call__(self, *args: Any) -> Any:
        return self.func(*args, **self.kwds)


def _raised_remotely(outcome: Outcome) -> Outcome:
    """An item's exception, with its remote traceback as its cause (as the stdlib)."""
    ok, value = outcome
    if ok:
        return outcome
    exc, tb = value
    exc.__cause__ = RemoteTraceback(f'\n"""\n{tb}"""')
    return False, exc


def _check_chunksize(chunksize: Any) -> None:
    if isinstance(chunksize, bool) or not isinstance(chunksize, int) or chunksize < 1:
        raise ValueError(f"Chunksize must be 1+, not {chunksize!r}")
