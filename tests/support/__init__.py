"""What every suite shares: one daemon harness, one subprocess runner, one ``wait_until``,
one parser of the typed errors the keyring CLI prints, environments and raw sockets.

The fakes of menda-cloud, the index and the proxy stay in ``tests.fakes``. Fixtures are in
``tests/conftest.py``; the benchmarks and the demo import from here as well.
"""
