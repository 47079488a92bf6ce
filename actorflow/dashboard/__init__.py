"""The web dashboard: a small aiohttp server, a process of its own next to the GCS (started by
``actorflow start --head``, or by ``actorflow.init(include_dashboard=True)``), that shows the
cluster in a browser and serves the same JSON as the command line's ``--format json`` under
``/api/...``.

- ``auth.py``: the login page (the cluster token), session cookies, the gate before every page
  and API.
- ``endpoints.py``: ``/api/<view>`` (``actorflow.util.state.listings``), logs, server-sent
  events for live pages.
- ``pages.py``: the HTML pages (plain HTML; ``static/dashboard.js`` fills them from the API).
- ``server.py``: the application and the process (``python -m actorflow.dashboard``).
"""
