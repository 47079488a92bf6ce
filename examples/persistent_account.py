"""An account actor whose state survives the death of its process.

Demonstrates:
  * pluggable persistence: the actor only knows the ``BasePersistence``
    interface (``exists`` / ``save`` / ``restore``); ``FilePersistence``
    stores the state as JSON files in a directory;
  * ``max_restarts=1``: when the actor's process dies, the framework starts
    the actor again by re-running ``__init__`` with the original arguments,
    and ``__init__`` restores the saved state;
  * a method call that is running when the process dies fails with
    ``actorflow.exceptions.ActorDiedError`` (or ``ActorUnavailableError``,
    when the actor is already restarting); later calls go to the restarted
    actor.
"""

import abc
import json
import os
import tempfile

import actorflow


class BasePersistence(abc.ABC):
    """Where an actor keeps its state between incarnations."""

    @abc.abstractmethod
    def exists(self, key: str) -> bool:
        """Is there saved state for ``key``?"""

    @abc.abstractmethod
    def save(self, key: str, state: dict) -> None:
        """Store ``state`` under ``key``, replacing what was there."""

    @abc.abstractmethod
    def restore(self, key: str) -> dict:
        """Return the state last saved under ``key``."""


class FilePersistence(BasePersistence):
    """One JSON file per key in ``basedir``, replaced atomically on save."""

    def __init__(self, basedir: str):
        self.basedir = basedir
        os.makedirs(basedir, exist_ok=True)

    def _path(self, key: str) -> str:
        return os.path.join(self.basedir, f"{key}.json")

    def exists(self, key: str) -> bool:
        return os.path.exists(self._path(key))

    def save(self, key: str, state: dict) -> None:
        tmp_path = self._path(key) + ".tmp"
        with open(tmp_path, "w") as f:
            json.dump(state, f)
        os.replace(tmp_path, self._path(key))

    def restore(self, key: str) -> dict:
        with open(self._path(key)) as f:
            return json.load(f)


@actorflow.remote(max_restarts=1)
class Account:
    def __init__(self, account_key: str, persistence: BasePersistence):
        self.key = account_key
        self.persistence = persistence
        if persistence.exists(account_key):
            state = persistence.restore(account_key)
            self.restored = True
        else:
            state = {"balance": 0, "transactions": 0}
            self.restored = False
        self.balance = state["balance"]
        self.transactions = state["transactions"]

    def _save(self):
        self.persistence.save(
            self.key, {"balance": self.balance, "transactions": self.transactions}
        )

    def deposit(self, amount: int) -> int:
        self.balance += amount
        self.transactions += 1
        self._save()
        return self.balance

    def withdraw(self, amount: int) -> int:
        if amount > self.balance:
            raise ValueError(f"cannot withdraw {amount}: balance is {self.balance}")
        self.balance -= amount
        self.transactions += 1
        self._save()
        return self.balance

    def info(self) -> dict:
        return {
            "balance": self.balance,
            "transactions": self.transactions,
            "restored": self.restored,
            "pid": os.getpid(),
        }

    def crash(self):
        """Simulate a hard failure: the actor's process exits immediately."""
        os._exit(1)


def main():
    actorflow.init()

    with tempfile.TemporaryDirectory() as basedir:
        persistence = FilePersistence(basedir)
        account = Account.remote("alice", persistence)

        actorflow.get(account.deposit.remote(100))
        actorflow.get(account.withdraw.remote(30))
        actorflow.get(account.deposit.remote(5))
        before = actorflow.get(account.info.remote())
        print(
            f"before the crash: balance={before['balance']} "
            f"transactions={before['transactions']} pid={before['pid']}"
        )
        print(f"saved state on disk: {persistence.restore('alice')}")

        try:
            actorflow.get(account.crash.remote())
        except (
            actorflow.exceptions.ActorDiedError,
            actorflow.exceptions.ActorUnavailableError,
        ) as error:
            print(f"crash(): the actor's process died ({type(error).__name__})")

        # This call is served by the restarted actor.
        after = actorflow.get(account.info.remote())
        print(
            f"after the restart: balance={after['balance']} "
            f"transactions={after['transactions']} pid={after['pid']} "
            f"restored={after['restored']}"
        )
        print(f"restarted in a new process: {after['pid'] != before['pid']}")
        assert after["balance"] == before["balance"] == 75
        assert after["restored"]

        # The restarted actor keeps working and keeps persisting.
        print(f"deposit 25 -> balance {actorflow.get(account.deposit.remote(25))}")
        print(f"saved state on disk: {persistence.restore('alice')}")
        print(f"final balance: {actorflow.get(account.info.remote())['balance']}")

    actorflow.shutdown()


if __name__ == "__main__":
    main()
