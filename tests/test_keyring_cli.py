"""The backend through the real ``keyring`` CLI in subprocesses, as uv and pip call it."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.fakes.menda_cloud import FakeMendaCloud
from tests.support.env import CA_URL, KEYRING, base_env, m2m_env
from tests.support.procs import Run, keyring_herd, run
from tests.support.windows_emulation import needs_unix_sockets


def keyring(*args: str, env: dict[str, str], stdin: str | None = None) -> Run:
    return run([KEYRING, *args], env, stdin=stdin)


def test_list_backends_shows_ours_with_priority(home: Path) -> None:
    result = keyring("--list-backends", env=base_env(home))
    assert result.returncode == 0, result.stderr
    assert "menda_keyring.backend.MendaCodeArtifactKeyring (priority: 9.9)" in result.stdout


def test_get_password_for_codeartifact(cloud: FakeMendaCloud, home: Path) -> None:
    result = keyring("get", CA_URL, "aws", env=m2m_env(home, cloud, MENDA_CREDD="off"))
    assert result.returncode == 0, result.stderr
    assert cloud.is_valid_registry_token(result.stdout.strip(), "menda-private")


def test_creds_mode_without_username_as_uv_asks(cloud: FakeMendaCloud, home: Path) -> None:
    result = keyring("--mode", "creds", "get", CA_URL, env=m2m_env(home, cloud))
    assert result.returncode == 0, result.stderr
    username, password = result.stdout.splitlines()
    assert username == "aws"
    assert cloud.is_valid_registry_token(password)


@pytest.mark.parametrize("args", [[], ["aws"]])
def test_creds_json_as_pip_asks(cloud: FakeMendaCloud, home: Path, args: list[str]) -> None:
    result = keyring(
        "--mode=creds", "--output=json", "get", CA_URL, *args, env=m2m_env(home, cloud)
    )
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["username"] == "aws"
    assert cloud.is_valid_registry_token(answer["password"])


def test_other_usernames_and_other_sites_get_nothing(cloud: FakeMendaCloud, home: Path) -> None:
    env = m2m_env(home, cloud)
    assert keyring("get", CA_URL, "alice", env=env).returncode == 1
    assert keyring("get", "https://pypi.org/simple/", "aws", env=env).returncode == 1
    assert cloud.counts()["oauth"] == 0 and cloud.counts()["registry"] == 0


def test_errors_are_typed_clear_and_free_of_secrets(cloud: FakeMendaCloud, home: Path) -> None:
    result = keyring("get", CA_URL, "aws", env=base_env(home, MENDA_CREDD="off"))
    assert result.returncode != 0
    assert "ConfigFileNotFoundError" in result.stderr
    assert "Menda config file not found" in result.stderr
    assert "Run menda auth configure" in result.stderr
    assert "Traceback" not in result.stderr  # one clear line for uv's and pip's users
    bad = m2m_env(home, cloud, MENDA_CLIENT_SECRET="sentinel-bad-secret-31")
    result = keyring("get", CA_URL, "aws", env=bad)
    assert "MendaCloudAPIError" in result.stderr and "invalid_client" in result.stderr
    assert "sentinel-bad-secret-31" not in result.stderr + result.stdout


NOT_OURS_PROBE = textwrap.dedent(
    """
    import os, sys
    from menda_keyring.backend import MendaCodeArtifactKeyring
    backend = MendaCodeArtifactKeyring()
    events = []
    def hook(event, args):
        if event in ("open", "socket.connect", "socket.__new__", "os.listdir", "os.scandir"):
            events.append(event)
    sys.addaudithook(hook)
    answers = [
        backend.get_password("https://pypi.org/simple/", "aws"),
        backend.get_credential("https://evil.com/menda-private-058264169513.d.codeartifact.eu-west-1.amazonaws.com/", None),
        backend.get_password("x.d.codeartifact.eu-west-1.amazonaws.com.evil.com", None),
    ]
    print(answers, events)
    """
)


def test_not_ours_touches_no_file_and_no_network(home: Path) -> None:
    # A broken environment would raise if it were read: proof that nothing is consulted.
    env = base_env(home, MENDA_HOST="http://not a url", MENDA_KEYRING_TIMEOUT="nonsense")
    result = subprocess.run(
        [sys.executable, "-c", NOT_OURS_PROBE], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[None, None, None] []"


SECOND_BACKEND = textwrap.dedent(
    """
    import json, os
    from keyring.backend import KeyringBackend

    class JsonFileKeyring(KeyringBackend):
        priority = 5
        path = os.path.join(os.environ["HOME"], "second-backend.json")

        def _load(self):
            try:
                with open(self.path) as f:
                    return json.load(f)
            except FileNotFoundError:
                return {}

        def get_password(self, service, username):
            return self._load().get(f"{service}|{username}")

        def set_password(self, service, username, password):
            data = self._load()
            data[f"{service}|{username}"] = password
            with open(self.path, "w") as f:
                json.dump(data, f)

        def delete_password(self, service, username):
            data = self._load()
            data.pop(f"{service}|{username}")
            with open(self.path, "w") as f:
                json.dump(data, f)
    """
)


def test_chainer_passes_set_and_delete_on_for_other_services(
    cloud: FakeMendaCloud, home: Path, tmp_path: Path
) -> None:
    site = tmp_path / "site"
    (site / "second_backend-1.0.dist-info").mkdir(parents=True)
    (site / "second_backend-1.0.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: second-backend\nVersion: 1.0\n"
    )
    (site / "second_backend-1.0.dist-info" / "entry_points.txt").write_text(
        "[keyring.backends]\nsecond = second_backend\n"
    )
    (site / "second_backend.py").write_text(SECOND_BACKEND)
    env = m2m_env(home, cloud, PYTHONPATH=str(site))

    listed = keyring("--list-backends", env=env).stdout
    assert "ChainerBackend (priority: 10)" in listed
    assert "second_backend.JsonFileKeyring (priority: 5)" in listed

    assert keyring("set", "https://example.org", "bob", env=env, stdin="hunter2\n").returncode == 0
    assert keyring("get", "https://example.org", "bob", env=env).stdout.strip() == "hunter2"
    # Ours: answered through the chainer, and set stores nothing anywhere.
    assert cloud.is_valid_registry_token(keyring("get", CA_URL, "aws", env=env).stdout.strip())
    assert keyring("set", CA_URL, "aws", env=env, stdin="not-stored\n").returncode == 0
    assert "not-stored" not in (home / "second-backend.json").read_text()
    assert keyring("del", CA_URL, "aws", env=env).returncode == 0
    assert keyring("del", "https://example.org", "bob", env=env).returncode == 0
    assert "example.org" not in (home / "second-backend.json").read_text()


def test_cold_herd_of_16_processes_makes_one_oauth_exchange(
    cloud: FakeMendaCloud, home: Path
) -> None:
    cloud.inject("oauth", delay=0.5)  # widen the race: everyone starts before the first answer
    env = m2m_env(home, cloud, MENDA_CREDD="off")
    runs = keyring_herd(env, 16)
    assert [run.returncode for run in runs] == [0] * 16, [run.stderr for run in runs]
    assert all(cloud.is_valid_registry_token(run.stdout.strip()) for run in runs)
    assert cloud.counts()["oauth"] == 1
    assert cloud.counts()["registry"] == 16


IMPORT_PROBE = textwrap.dedent(
    """
    import sys, time, keyring.backend, keyring.credentials
    started = time.perf_counter()
    import menda_keyring.backend
    cost_ms = (time.perf_counter() - started) * 1000
    keyring.get_keyring()
    keyring.get_password("https://pypi.org/simple/", "aws")
    heavy = ("aiohttp", "anyio", "filelock", "menda_credd", "menda_keyring.in_process", "menda_keyring.resolution")
    print(sorted(m for m in heavy if m in sys.modules), round(cost_ms, 1))
    """
)


def test_keyring_startup_imports_nothing_heavy(home: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", IMPORT_PROBE],
        env=base_env(home),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    heavy, cost_ms = result.stdout.rsplit(" ", 1)
    assert heavy == "[]"
    assert float(cost_ms) < 60, cost_ms  # generous bound: a few ms here; aiohttp alone is ~200


@needs_unix_sockets
def test_a_silent_daemon_socket_is_not_waited_on_forever(cloud: FakeMendaCloud, home: Path) -> None:
    import socket

    path = home / "wedged.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(16)  # accepts connections into the backlog but never answers
    try:
        started = time.monotonic()
        result = keyring(
            "get", CA_URL, "aws", env=m2m_env(home, cloud, MENDA_CREDD_SOCKET=str(path))
        )
        elapsed = time.monotonic() - started
    finally:
        server.close()
    assert result.returncode == 0, result.stderr
    assert cloud.is_valid_registry_token(result.stdout.strip())
    assert elapsed < 15


def test_library_callers_get_the_typed_error(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from menda_keyring.backend import MendaCodeArtifactKeyring
    from menda_keyring.errors import ConfigFileNotFoundError

    assert "keyring.cli" not in sys.modules
    for key, value in base_env(home, MENDA_CREDD="off").items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ConfigFileNotFoundError, match="Menda config file not found"):
        MendaCodeArtifactKeyring().get_password(CA_URL, "aws")
