"""The menda-keyring benchmark; run it as ``.venv/bin/python -m benchmarks.run``."""
