"""``python -m actorflow.dashboard``: the dashboard process (see server.py)."""

from actorflow.dashboard.server import main

if __name__ == "__main__":
    main()
