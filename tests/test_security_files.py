"""Security of the files at the OS edge: what we read, what we write, what we keep.

``mendacfg`` and ``.token`` are read only when they are small regular files; the token
cache folder is trusted only when it is ours and nobody else can write it; files the
product writes get explicit modes whatever the umask; the daemon keeps no ``MENDA_*``
secret of the shell that started it; an unwritable ``HOME`` is a typed error.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from menda_credd import runtime
from menda_keyring import errors
from menda_keyring.in_process import InProcessResolver
from menda_keyring.paths import config_path, token_cache_path
from menda_keyring.urls import parse_codeartifact_service
from tests.fakes.menda_cloud import FakeMendaCloud
from tests.support.daemon import Daemon
from tests.support.env import (
    CA_URL,
    IS_ROOT,
    MENDA_CREDD,
    base_env,
    m2m_env,
    sentinel,
    short_tmpdir,
    write_profile,
    write_user_token,
)
from tests.support.errors import typed_error
from tests.support.procs import credd, keyring_get, run

TARGET = parse_codeartifact_service(CA_URL)
NOBODY = 65534
SYSTEM_PYTHON = "/usr/bin/python3"
linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs /proc")


def resolve_in_thread(env: dict[str, str], timeout: float = 15.0) -> BaseException | str:
    """Resolve in this process, but never let a regression (a blocking read) hang the suite."""
    assert TARGET is not None
    outcome: list[BaseException | str] = []

    def work() -> None:
        try:
            outcome.append(InProcessResolver(env).resolve(TARGET).token)
        except BaseException as exc:
            outcome.append(exc)

    worker = threading.Thread(target=work, daemon=True)
    worker.start()
    worker.join(timeout)
    assert outcome, f"in-process resolution did not return within {timeout} s"
    return outcome[0]


# -- item 7: mendacfg and .token are small regular files ---------------------------------


def fifo_config(home: Path) -> Path:
    path = config_path(home)
    path.parent.mkdir(mode=0o700, exist_ok=True)
    os.mkfifo(path, 0o600)
    return path


def dev_zero_config(home: Path) -> Path:
    path = config_path(home)
    path.parent.mkdir(mode=0o700, exist_ok=True)
    path.symlink_to("/dev/zero")
    return path


@pytest.mark.parametrize("make", [fifo_config, dev_zero_config], ids=["fifo", "dev-zero"])
def test_a_fifo_or_device_as_mendacfg_is_a_typed_error_at_once(home: Path, make: object) -> None:
    assert callable(make)
    path = make(home)
    began = time.monotonic()
    outcome = resolve_in_thread({"HOME": str(home)})
    assert isinstance(outcome, errors.ConfigError), outcome
    assert str(outcome) == (
        f"Menda config file {path} is not a regular file (a FIFO, device or socket); "
        "refusing to read it"
    )
    cli = keyring_get(base_env(home), timeout=30)
    assert typed_error(cli.stderr) == ("ConfigError", str(outcome)), cli.describe()
    assert time.monotonic() - began < 20


def test_a_mendacfg_above_one_mib_is_refused(home: Path) -> None:
    path = write_profile(home, "[default]\nhost = https://example.invalid\n" + "#" * (1 << 20))
    outcome = resolve_in_thread({"HOME": str(home)})
    assert isinstance(outcome, errors.ConfigError), outcome
    assert str(outcome) == f"Menda config file {path} is larger than 1024 KiB; refusing it"


def test_a_fifo_as_the_token_cache_file_is_a_typed_error(home: Path) -> None:
    write_profile(home, "[default]\nhost = https://example.invalid\n")
    cache = token_cache_path(home)
    cache.parent.mkdir(mode=0o700, parents=True)
    os.mkfifo(cache, 0o600)
    outcome = resolve_in_thread({"HOME": str(home)})
    assert isinstance(outcome, errors.ConfigError), outcome
    assert f"Menda token cache file {cache} is not a regular file" in str(outcome)


def test_a_fifo_mendacfg_does_not_freeze_the_daemon(cloud: FakeMendaCloud, home: Path) -> None:
    with short_tmpdir("msf-") as folder:
        sock = folder / "credd.sock"
        victim = home / "victim"
        victim.mkdir()
        fifo_config(victim)
        with Daemon(m2m_env(home, cloud), sock):
            began = time.monotonic()
            bad = keyring_get(base_env(victim, MENDA_CREDD_SOCKET=str(sock)), timeout=30)
            assert typed_error(bad.stderr)[0] == "ConfigError", bad.describe()
            assert "is not a regular file" in bad.stderr
            assert time.monotonic() - began < 20
            good = keyring_get(m2m_env(home, cloud, MENDA_CREDD_SOCKET=str(sock)))
            assert cloud.is_valid_registry_token(good.token)


# -- item 8: the token cache folder is checked before a token in it is trusted -------------


def planted_login(cloud: FakeMendaCloud, home: Path) -> tuple[Path, str]:
    write_profile(home, f"[default]\nhost = {cloud.url}\n")
    token, expires_at = cloud.issue_user_token("alice", 3600)
    return write_user_token(home, "default", token, expires_at, cloud.url).parent, token


def test_a_token_cache_folder_others_can_write_is_not_trusted(
    cloud: FakeMendaCloud, home: Path
) -> None:
    folder, _token = planted_login(cloud, home)
    folder.chmod(0o777)
    outcome = resolve_in_thread({"HOME": str(home)})
    assert isinstance(outcome, errors.ConfigError), outcome
    assert str(outcome).startswith(f"Menda token cache folder {folder} ")
    assert "has mode 0777, writable by group or others" in str(outcome)
    assert cloud.counts()["registry"] == 0, "the planted token was sent"
    folder.chmod(0o755)  # readable by others is fine: the Menda CLI may make it so
    assert cloud.is_valid_registry_token(str(resolve_in_thread({"HOME": str(home)})))


def test_a_symlinked_token_cache_folder_is_not_trusted(cloud: FakeMendaCloud, home: Path) -> None:
    folder, _token = planted_login(cloud, home)
    elsewhere = home / "elsewhere"
    folder.rename(elsewhere)
    folder.symlink_to(elsewhere)
    outcome = resolve_in_thread({"HOME": str(home)})
    assert isinstance(outcome, errors.ConfigError), outcome
    assert "is a symbolic link" in str(outcome)
    assert cloud.counts()["registry"] == 0


@pytest.mark.skipif(not IS_ROOT, reason="needs root to give the folder to another user")
def test_a_token_cache_folder_of_another_user_is_not_trusted(
    cloud: FakeMendaCloud, home: Path
) -> None:
    folder, _token = planted_login(cloud, home)
    os.chown(folder, NOBODY, NOBODY)
    outcome = resolve_in_thread({"HOME": str(home)})
    assert isinstance(outcome, errors.ConfigError), outcome
    assert f"Menda token cache folder {folder} belongs to uid 65534" in str(outcome)
    assert cloud.counts()["registry"] == 0
    cli = keyring_get(base_env(home))
    assert typed_error(cli.stderr) == ("ConfigError", str(outcome)), cli.describe()


# -- item 4: files the product writes have explicit modes --------------------------------


@pytest.mark.skipif(sys.platform == "darwin", reason="the systemd plan (launchd writes a plist)")
def test_install_service_under_umask_000_writes_private_files(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    config = tmp_path / "xdg"
    env = base_env(home, XDG_CONFIG_HOME=str(config), PATH="/nonexistent")
    result = run([MENDA_CREDD, "install-service"], env, umask=0)
    # systemctl is not on PATH: the commands fail, the files must be right anyway.
    assert "systemctl not found" in result.stderr, result.describe()
    units = config / "systemd" / "user"
    written = [units / "menda-credd.service", units / "menda-credd.socket"]
    for path in written:
        assert f"wrote {path}" in result.stdout
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
        assert "ExecStart" in written[0].read_text()
    for made in (config, config / "systemd", units, home / ".menda"):
        assert stat.S_IMODE(made.stat().st_mode) == 0o700, made


def test_install_service_refuses_a_unit_folder_others_can_write(tmp_path: Path) -> None:
    if sys.platform == "darwin":
        pytest.skip("the systemd plan")
    home = tmp_path / "home"
    home.mkdir()
    units = tmp_path / "xdg" / "systemd" / "user"
    units.mkdir(parents=True)
    units.chmod(0o777)
    env = base_env(home, XDG_CONFIG_HOME=str(tmp_path / "xdg"), PATH="/nonexistent")
    result = run([MENDA_CREDD, "install-service"], env)
    assert result.returncode == 1, result.describe()
    assert f"folder {units} (owned by" in result.stderr
    assert "writable by group or others; not installing menda-credd.service" in result.stderr
    assert list(units.iterdir()) == []


def test_a_detached_daemon_log_is_0600_under_umask_000(cloud: FakeMendaCloud, home: Path) -> None:
    with short_tmpdir("msf-") as folder:
        sock = folder / "credd.sock"
        log = home / "logs" / "credd.log"
        env = m2m_env(home, cloud, MENDA_CREDD_SOCKET=str(sock))
        started = run([MENDA_CREDD, "start", "--log-file", str(log)], env, umask=0)
        try:
            assert started.returncode == 0, started.describe()
            assert stat.S_IMODE(log.stat().st_mode) == 0o600
            assert stat.S_IMODE(log.parent.stat().st_mode) == 0o700
        finally:
            assert credd("stop", env=env).returncode == 0


# -- the daemon's own environment, and an unwritable HOME ---------------------------------


def test_scrub_removes_identity_variables_and_keeps_the_daemons_own() -> None:
    env = {
        "MENDA_CLIENT_SECRET": "s",
        "MENDA_CLIENT_ID": "i",
        "MENDA_HOST": "h",
        "MENDA_PROFILE_ID": "p",
        "MENDA_CREDD_SOCKET": "/x.sock",
        "MENDA_CREDD_IDLE_TIMEOUT": "8h",
        "HOME": "/home/u",
    }
    removed = runtime.scrub_menda_env(env)
    assert sorted(removed) == [
        "MENDA_CLIENT_ID",
        "MENDA_CLIENT_SECRET",
        "MENDA_HOST",
        "MENDA_PROFILE_ID",
    ]
    assert env == {
        "MENDA_CREDD_SOCKET": "/x.sock",
        "MENDA_CREDD_IDLE_TIMEOUT": "8h",
        "HOME": "/home/u",
    }


@linux_only
def test_menda_credd_start_does_not_hand_the_shells_secret_to_the_daemon(
    cloud: FakeMendaCloud, home: Path
) -> None:
    secret = sentinel()
    with short_tmpdir("msf-") as folder:
        sock = folder / "credd.sock"
        env = base_env(
            home, MENDA_CREDD_SOCKET=str(sock), MENDA_CLIENT_SECRET=secret, MENDA_CLIENT_ID="x"
        )
        started = credd("start", env=env)
        try:
            assert started.returncode == 0, started.describe()
            pid = int(started.stdout.split("(pid ")[1].split(",")[0])
            environ = Path(f"/proc/{pid}/environ").read_bytes()
            assert f"MENDA_CREDD_SOCKET={sock}".encode() in environ
            assert secret.encode() not in environ
            assert b"MENDA_CLIENT_ID=" not in environ
        finally:
            assert credd("stop", env=env).returncode == 0


@pytest.mark.skipif(not IS_ROOT, reason="needs root to run keyring as nobody")
@pytest.mark.skipif(not os.access(SYSTEM_PYTHON, os.X_OK), reason=f"needs {SYSTEM_PYTHON}")
def test_an_unwritable_home_is_a_typed_error(cloud: FakeMendaCloud, tmp_path: Path) -> None:
    # Root ignores permissions, so the caller is nobody, with the system Python (this
    # interpreter lives under /root) on this venv's packages.
    site = next(Path(sys.prefix, "lib").glob("python3.*/site-packages"))
    probe = subprocess.run(
        [SYSTEM_PYTHON, "-c", "import sys; print(sys.version_info[:2])"],
        capture_output=True,
        text=True,
        check=True,
    )
    if probe.stdout.strip() != str(sys.version_info[:2]):
        pytest.skip(f"{SYSTEM_PYTHON} is not Python {sys.version_info[:2]}")
    with short_tmpdir("msf-") as shared:
        shared.chmod(0o755)  # nobody must reach the home inside
        home = shared / "home"
        home.mkdir(mode=0o555)
        env = m2m_env(home, cloud)
        env["PYTHONPATH"] = f"{site}{os.pathsep}{Path(__file__).resolve().parents[1]}"
        result = subprocess.run(
            [SYSTEM_PYTHON, "-m", "keyring", "get", CA_URL, "aws"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            user=NOBODY,
            group=NOBODY,
            extra_groups=[],
            cwd="/",
        )
        assert result.returncode == 1, result.stderr
        assert "Traceback" not in result.stderr
        assert typed_error(result.stderr) == (
            "ConfigError",
            f"The Menda token cache folder {home / '.menda' / 'tokens' / 'cache'} cannot be "
            "used: Permission denied. Check that your home folder is writable.",
        ), result.stderr
