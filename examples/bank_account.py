"""A bank account actor whose errors travel back to the caller.

Demonstrates:
  * an exception raised inside an actor method is re-raised by
    ``actorflow.get`` in the caller;
  * it can be caught as ``actorflow.exceptions.TaskError`` (with the original
    exception in ``.cause``) *or* by the application's own exception class:
    the error raised in the caller is an instance of both;
  * a failed method call does not kill the actor: its state is intact and it
    keeps serving calls.
"""

import actorflow


class InsufficientFundsError(ValueError):
    """Raised when a withdrawal would overdraw the account."""


@actorflow.remote
class Account:
    def __init__(self, owner: str, balance: int = 0):
        self.owner = owner
        self._balance = balance

    def deposit(self, amount: int) -> int:
        if amount <= 0:
            raise ValueError(f"deposit must be positive, got {amount}")
        self._balance += amount
        return self._balance

    def withdraw(self, amount: int) -> int:
        if amount > self._balance:
            raise InsufficientFundsError(
                f"cannot withdraw {amount}: balance of {self.owner} is {self._balance}"
            )
        self._balance -= amount
        return self._balance

    def balance(self) -> int:
        return self._balance


def main():
    actorflow.init()

    account = Account.remote("alice", balance=100)
    print(f"opened account with balance {actorflow.get(account.balance.remote())}")
    print(f"deposit 50 -> balance {actorflow.get(account.deposit.remote(50))}")
    print(f"withdraw 30 -> balance {actorflow.get(account.withdraw.remote(30))}")

    # 1. Catch the framework's generic task error; the original is in .cause.
    try:
        actorflow.get(account.withdraw.remote(1000))
    except actorflow.exceptions.TaskError as error:
        cause = error.cause
        print(f"withdraw 1000 refused (caught as TaskError): {type(cause).__name__}: {cause}")
        print(
            f"  it is also an InsufficientFundsError: {isinstance(error, InsufficientFundsError)}"
        )

    # 2. Catch the application's own exception class (or its base, ValueError).
    try:
        actorflow.get(account.withdraw.remote(500))
    except InsufficientFundsError as error:
        print(
            f"withdraw 500 refused (caught as InsufficientFundsError); "
            f"it is also a TaskError: {isinstance(error, actorflow.exceptions.TaskError)}"
        )

    try:
        actorflow.get(account.deposit.remote(-5))
    except ValueError as error:
        print(f"deposit -5 refused (caught as ValueError): {type(error.cause).__name__}")

    # The actor survived all three errors and its state is untouched.
    print(f"deposit 10 -> balance {actorflow.get(account.deposit.remote(10))}")
    final = actorflow.get(account.balance.remote())
    print(f"final balance: {final}")
    assert final == 130

    actorflow.shutdown()


if __name__ == "__main__":
    main()
