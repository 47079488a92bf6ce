"""A supervision tree: flaky workers and a persisted ledger, kept running by supervisors.

    bank (Supervisor, one_for_one)
     +-- ledger   Ledger: an account whose balance is saved to disk after every deposit
     +-- workers  (Supervisor, one_for_one, at most 3 restarts in 10 s)
          +-- flaky-1  FlakyWorker: crashes now and then
          +-- flaky-2  FlakyWorker

The driver hands out 30 jobs to the workers and deposits their results into the ledger,
retrying a job whose worker crashed. Along the way the ledger crashes (its restarted
incarnation reads its balance back from disk), and one worker crashes again and again: more
than the workers supervisor allows (3 restarts in 10 s), so it gives up and the bank
supervisor restarts it with fresh workers. Every failure and restart is printed as it
happens, from the supervisors' logs (Supervisor.events()).
"""

import asyncio
import json
import os
import tempfile

import actorflow
from actorflow.supervision import Backoff, ChildSpec, Supervisor, supervisor_spec

JOBS = 30
QUICK = Backoff(initial=0.02, factor=2.0, maximum=0.5, jitter=0.2)


class FilePersistence:
    """The state of each key as a JSON file in basedir, replaced atomically."""

    def __init__(self, basedir: str):
        self.basedir = basedir

    def _path(self, key: str) -> str:
        return os.path.join(self.basedir, f"{key}.json")

    def load(self, key: str, default: dict) -> dict:
        if not os.path.exists(self._path(key)):
            return default
        with open(self._path(key)) as f:
            return json.load(f)

    def save(self, key: str, state: dict) -> None:
        with open(self._path(key) + ".tmp", "w") as f:
            json.dump(state, f)
        os.replace(self._path(key) + ".tmp", self._path(key))


@actorflow.remote
class Ledger:
    """An account whose state survives its restarts: each incarnation starts from disk."""

    def __init__(self, key: str, persistence: FilePersistence):
        self.key, self.persistence = key, persistence
        state = persistence.load(key, {"balance": 0, "applied": []})
        self.balance, self.applied = state["balance"], set(state["applied"])
        self.restored = bool(self.applied)

    def deposit(self, job: int, amount: int) -> int:
        if job not in self.applied:  # at most once per job, even when a deposit is retried
            self.balance += amount
            self.applied.add(job)
            self.persistence.save(
                self.key, {"balance": self.balance, "applied": sorted(self.applied)}
            )
        return self.balance

    def info(self) -> dict:
        return {
            "balance": self.balance,
            "deposits": len(self.applied),
            "restored": self.restored,
            "pid": os.getpid(),
        }

    def crash(self) -> None:
        os._exit(1)


@actorflow.remote
class FlakyWorker:
    def __init__(self, name: str):
        self.name = name

    def process(self, job: int, attempt: int) -> int:
        if job % 7 == 0 and attempt == 0:  # "now and then": the first try of every 7th job
            os._exit(1)
        return job * 10

    def crash(self) -> None:
        os._exit(1)


async def follow(name: str, stop: asyncio.Event) -> None:
    """Print the log of the supervisor named `name` as it grows, across its restarts."""
    seen: dict[str, int] = {}  # actor id -> last sequence number printed
    while True:
        try:
            sup = await actorflow.get_actor_async(name)
        except ValueError:  # between two incarnations
            if stop.is_set():
                return
            await asyncio.sleep(0.05)
            continue
        after = seen.get(sup.actor_id, 0)
        try:
            events = await sup.events.remote(after, timeout=0.2)
        except actorflow.exceptions.ActorError:
            continue  # it died: look it up again
        for event in events:
            print(f"  {event}")
            seen[sup.actor_id] = event.seq
        if stop.is_set() and not events:
            return


async def child(sup, name: str):
    """The child's current handle (the supervisor waits while it restarts); ActorError if
    the supervisor itself is dead."""
    while True:
        try:
            return await sup.get_child.remote(name)
        except ValueError:
            await asyncio.sleep(0.05)


async def run_job(bank, job: int) -> int:
    """Process a job on a worker and deposit the result, retrying while workers crash."""
    worker_name = f"flaky-{job % 2 + 1}"
    attempt = 0
    while True:
        try:
            worker = await child(await child(bank, "workers"), worker_name)
        except actorflow.exceptions.ActorError:
            continue  # the workers supervisor is being restarted
        try:
            amount = await worker.process.remote(job, attempt)
            break
        except actorflow.exceptions.ActorError:
            print(f"job {job}: {worker_name} crashed on attempt {attempt + 1}; retrying")
            attempt += 1
    ledger = await child(bank, "ledger")
    return await ledger.deposit.remote(job, amount)


async def main(basedir: str) -> None:
    persistence = FilePersistence(basedir)
    bank = Supervisor.start(
        [
            ChildSpec("ledger", Ledger, args=("alice", persistence)),
            supervisor_spec(
                "workers",
                [
                    ChildSpec("flaky-1", FlakyWorker, args=("flaky-1",)),
                    ChildSpec("flaky-2", FlakyWorker, args=("flaky-2",)),
                ],
                intensity=3,
                period=10,
                backoff=QUICK,
            ),
        ],
        name="bank",
        intensity=5,
        period=10,
        backoff=QUICK,
    )
    top = [c.name for c in await bank.which_children.remote()]
    workers = await (await child(bank, "workers")).which_children.remote()
    print(
        f"tree started: bank -> {', '.join(top)}; workers -> {', '.join(c.name for c in workers)}"
    )
    stop = asyncio.Event()
    followers = [asyncio.ensure_future(follow(name, stop)) for name in ("bank", "bank.workers")]

    print("== jobs 1-20 ==")
    for job in range(1, 21):
        await run_job(bank, job)
    ledger = await child(bank, "ledger")
    before = await ledger.info.remote()
    print(f"ledger before its crash: balance {before['balance']}, {before['deposits']} deposits")

    print("== the ledger crashes ==")
    ledger.crash.remote()
    while (ledger_now := await child(bank, "ledger")) == ledger:
        await asyncio.sleep(0.02)  # the supervisor has not noticed yet
    after = await ledger_now.info.remote()
    print(
        f"ledger after its restart: balance {after['balance']}, restored from disk: "
        f"{after['restored']}, new process: {after['pid'] != before['pid']}"
    )

    print("== flaky-1 crashes again and again ==")
    workers_sup = await child(bank, "workers")
    crashed = None
    while (await child(bank, "workers")) == workers_sup:
        try:
            worker = await child(workers_sup, "flaky-1")
            if worker == crashed:
                await asyncio.sleep(0.02)  # the supervisor has not noticed yet
                continue
            crashed = worker
            await worker.crash.remote()
        except actorflow.exceptions.ActorError:
            await asyncio.sleep(0.02)  # it crashed, or the workers supervisor gave up
    print("the bank restarted the workers supervisor, with new workers")

    print("== jobs 21-30 ==")
    balance = 0
    for job in range(21, JOBS + 1):
        balance = await run_job(bank, job)

    stop.set()
    await asyncio.gather(*followers)
    state = {c.name: (c.state, c.restarts) for c in await bank.which_children.remote()}
    expected = sum(10 * job for job in range(1, JOBS + 1))
    print(f"bank's children: {state}")
    print(
        f"summary: {JOBS} jobs done, balance {balance} (expected {expected}), "
        f"ledger restored after its crash: {after['restored']}"
    )
    assert balance == expected and after["balance"] == before["balance"]
    await bank.shutdown.remote()
    print("supervision tree shut down")


if __name__ == "__main__":
    actorflow.init()
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(main(tmp))
    actorflow.shutdown()
