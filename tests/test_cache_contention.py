"""The shared token cache under contention, with a Menda-CLI-like writer using filelock."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

from menda_keyring.paths import token_cache_path
from tests.fakes.menda_cloud import FakeMendaCloud
from tests.support.env import CA_URL, base_env

RESOLVER = textwrap.dedent(
    """
    import os, sys
    from menda_keyring.in_process import InProcessResolver
    from menda_keyring.urls import parse_codeartifact_service
    target = parse_codeartifact_service(sys.argv[1])
    for _ in range(int(sys.argv[2])):
        InProcessResolver(os.environ).resolve(target)
    """
)

# What the Menda CLI does: filelock on .token.lock, read, change its entry, atomic replace.
CLI_WRITER = textwrap.dedent(
    """
    import json, os, sys, tempfile
    from pathlib import Path
    from filelock import FileLock
    cache = Path(sys.argv[1]); host = sys.argv[2]
    for i in range(int(sys.argv[3])):
        with FileLock(str(cache) + ".lock"):
            try:
                data = json.loads(cache.read_text())
            except FileNotFoundError:
                data = {"version": 1, "tokens": {}}
            data["tokens"][f"u2m:user{i}"] = {"access_token": f"user-token-{i}",
                "token_type": "Bearer", "expires_at": 4102444800, "host": host, "auth_type": "u2m"}
            fd, tmp = tempfile.mkstemp(dir=cache.parent)
            with os.fdopen(fd, "w") as f:
                json.dump(data, f)
            os.chmod(tmp, 0o600)
            os.replace(tmp, cache)
    """
)


def test_fifty_refreshing_processes_and_a_cli_writer_lose_nothing(home: Path) -> None:
    processes, rounds, user_entries = 50, 3, 40
    with FakeMendaCloud(
        machine_token_lifetime=60
    ) as cloud:  # 60 s: stale at once, refresh each time
        for i in range(processes):
            cloud.add_client(f"bot-{i}", f"secret-{i}")
        cache = token_cache_path(home)
        cache.parent.mkdir(parents=True, mode=0o700)
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", CLI_WRITER, str(cache), cloud.url, str(user_entries)],
                env=base_env(home),
            )
        ]
        for i in range(processes):
            env = base_env(
                home,
                MENDA_CLIENT_ID=f"bot-{i}",
                MENDA_CLIENT_SECRET=f"secret-{i}",
                MENDA_HOST=cloud.url,
                MENDA_KEYRING_TIMEOUT="120",
            )
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-c", RESOLVER, CA_URL, str(rounds)],
                    env=env,
                    preexec_fn=lambda: os.umask(0),  # the point of the test
                )
            )
        codes = [p.wait(timeout=300) for p in procs]
        assert codes == [0] * len(procs)
        assert cloud.counts()["oauth"] == processes * rounds

    data = json.loads(cache.read_text())
    tokens = data["tokens"]
    assert {f"m2m:client:bot-{i}" for i in range(processes)} <= set(tokens)
    assert {f"u2m:user{i}" for i in range(user_entries)} <= set(tokens)
    assert len(tokens) == processes + user_entries
    assert stat.S_IMODE(cache.stat().st_mode) == 0o600
    assert stat.S_IMODE(cache.parent.stat().st_mode) == 0o700
    leftovers = [p.name for p in cache.parent.iterdir() if ".tmp-" in p.name or "corrupt" in p.name]
    assert leftovers == []
