"""Figure 13: a fleet of hosts against one rate-limited menda-cloud, simulated.

A discrete-event simulation (``loop.py``: a heap of timed callbacks, plain Python) that
runs the project's own decision code for every host: the resolution flow
(:mod:`menda_keyring.resolution`, its effects answered by the simulated network, clock
and token cache: ``flows.py``), the retry policy (:mod:`menda_keyring.retry`), the
serving margins (:mod:`menda_keyring.tokens`) and the daemon's refresh timing
(:mod:`menda_credd.refresh`). The daemon's broker itself is anyio and too heavy for ten
thousand hosts, so ``daemon.py`` models it with the functions it uses. ``cloud.py`` is
menda-cloud admitting at most R registry exchanges a second; ``scenarios.py`` runs the
issue's four scenarios and ``python -m benchmarks.fleet`` prints their table.
"""
