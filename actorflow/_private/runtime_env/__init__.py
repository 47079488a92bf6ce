"""Runtime environments (Ray's ``runtime_env``): what a task's or actor's worker runs in.

``spec`` checks and merges envs, ``packaging`` packs local folders on the driver, ``store`` keeps
packages in the GCS, ``agent`` sets envs up on a node (packages unpacked, pip virtualenvs).
"""
