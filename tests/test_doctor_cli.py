"""The real ``menda-keyring doctor`` walks a real chain, and names exactly the broken link.

Real parts throughout: the venv's ``keyring`` first on PATH (a ``keyring`` symlink in the
sandbox's bin), the fake menda-cloud, the fake CodeArtifact index behind the HTTPS proxy.
Each test breaks one link of an otherwise healthy chain and checks that doctor fails that
link alone (later ones are skipped, not failed) and says what to do.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.fakes.world import FakeWorld
from tests.support.doctor import PROJECT_INDEX, Verdicts, doctor, doctor_env, write_project
from tests.support.env import sentinel, short_tmpdir, write_profile, write_user_token
from tests.support.installers import UV, Sandbox, keyring_only_bin, without_identity
from tests.support.procs import run
from tests.support.sockets import closed_port

pytestmark = pytest.mark.cli


@pytest.fixture(scope="module")
def world() -> Iterator[FakeWorld]:
    with FakeWorld() as fake:
        yield fake


@dataclass
class Setup:
    world: FakeWorld
    box: Sandbox
    env: dict[str, str]
    project: Path

    def doctor(self, *args: str, env: dict[str, str] | None = None) -> Verdicts:
        return doctor(self.env if env is None else env, self.project, *args)


@pytest.fixture
def setup(world: FakeWorld, tmp_path: Path) -> Iterator[Setup]:
    with short_tmpdir() as run_dir:
        box = Sandbox.create(tmp_path / "sandbox", run_dir)
        project = write_project(tmp_path / "project")
        try:
            yield Setup(world, box, doctor_env(world, box), project)
        finally:
            world.cloud.clear_faults()
            world.cloud.allow(f"client:{world.client_id}", world.domain)


def test_a_healthy_chain_holds_link_by_link(setup: Setup) -> None:
    verdicts = setup.doctor()
    assert verdicts.run.returncode == 0, verdicts.describe()
    assert {c["status"] for c in verdicts.checks} == {"ok"}, verdicts.describe()
    names = [c["name"] for c in verdicts.checks]
    for expected in (
        "keyring on PATH",
        "keyring backend",
        "keyring selection",
        "uv index menda-private",
        "uv keyring-provider",
        "identity",
        "token cache",
        "daemon",
        "menda-cloud",
        "exchange menda-private-058264169513",
        f"registry {PROJECT_INDEX}",
    ):
        assert any(n.startswith(expected) for n in names), (expected, names)
    assert str(setup.box.bin / "keyring") in verdicts.named("keyring on PATH")[0]["found"]
    assert "not running" in verdicts.named("daemon")[0]["found"]
    assert "HTTP 200" in verdicts.named("registry")[0]["found"]


def test_text_output_is_one_line_per_check(setup: Setup) -> None:
    result = run([sys.executable, "-m", "menda_keyring.cli.doctor"], setup.env, cwd=setup.project)
    as_json = setup.doctor()
    lines = result.stdout.strip().splitlines()
    assert result.returncode == 0, result.describe()
    assert len(lines) == len(as_json.checks) + 2  # a title and a summary
    assert lines[-1] == "every link holds"
    assert all(line.startswith("ok    ") for line in lines[1:-1]), result.stdout


@pytest.fixture(scope="module")
def keyring_alone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv with keyring from PyPI and no menda-keyring: another keyring a user may have."""
    venv = tmp_path_factory.mktemp("keyring-alone") / "venv"
    subprocess.run([UV, "venv", "-q", "--python", sys.executable, venv], check=True)
    subprocess.run(
        [UV, "pip", "install", "-q", "--python", venv / "bin" / "python", "keyring"], check=True
    )
    return venv / "bin" / "keyring"


def test_another_keyring_first_on_path_fails_the_backend_link(
    setup: Setup, keyring_alone: Path
) -> None:
    keyring_only_bin(setup.box.bin, keyring_alone)
    verdicts = setup.doctor()
    check = verdicts.only_failure("keyring backend")
    assert "menda-keyring is not installed" in check["found"]
    assert str(keyring_alone.parent / "python") in check["found"]
    assert verdicts.status_of("keyring selection") == "skipped"
    assert verdicts.status_of("registry") == "ok"  # the rest of the chain still holds


def test_no_keyring_on_path_at_all(setup: Setup) -> None:
    (setup.box.bin / "keyring").unlink()
    verdicts = setup.doctor()
    check = verdicts.only_failure("keyring on PATH")
    assert "uv tool install" in check["fix"]


def test_python_keyring_backend_hiding_ours_fails_the_selection(setup: Setup) -> None:
    env = {**setup.env, "PYTHON_KEYRING_BACKEND": "keyring.backends.null.Keyring"}
    check = setup.doctor(env=env).only_failure("keyring selection")
    assert "PYTHON_KEYRING_BACKEND=keyring.backends.null.Keyring" in check["found"]
    assert "unset PYTHON_KEYRING_BACKEND" in check["fix"]


def test_a_keyringrc_selecting_another_backend_fails_the_selection(setup: Setup) -> None:
    config = setup.box.config / "python_keyring" / "keyringrc.cfg"
    config.parent.mkdir(parents=True)
    config.write_text("[backend]\ndefault-keyring = keyring.backends.null.Keyring\n")
    check = setup.doctor().only_failure("keyring selection")
    assert str(config) in check["found"] and str(config) in check["fix"]


def test_the_chainer_selected_by_keyringrc_still_holds(setup: Setup) -> None:
    config = setup.box.config / "python_keyring" / "keyringrc.cfg"
    config.parent.mkdir(parents=True)
    config.write_text("[backend]\ndefault-keyring = keyring.backends.chainer.ChainerBackend\n")
    verdicts = setup.doctor()
    assert verdicts.run.returncode == 0, verdicts.describe()
    assert "asks ours first" in verdicts.named("keyring selection")[0]["found"]


def test_an_index_without_user_name_or_authenticate_fails_that_index(setup: Setup) -> None:
    write_project(setup.project, authenticate=False)
    verdicts = setup.doctor()
    check = verdicts.only_failure("uv index menda-private")
    assert 'authenticate = "always"' in check["fix"] and "aws@" in check["fix"]
    assert verdicts.status_of("registry") == "ok"


def test_uv_without_the_subprocess_provider_fails_that_link(setup: Setup) -> None:
    write_project(setup.project, provider="disabled")
    check = setup.doctor().only_failure("uv keyring-provider")
    assert "UV_KEYRING_PROVIDER=subprocess" in check["fix"]


def test_a_missing_profile_fails_the_identity_and_skips_the_network(setup: Setup) -> None:
    write_profile(setup.box.home, f"[other]\nhost = {setup.world.cloud_url}\n")
    env = {**without_identity(setup.env), "MENDA_PROFILE_ID": "ci"}
    verdicts = setup.doctor(env=env)
    check = verdicts.only_failure("identity")
    assert "ProfileNotFoundError" in check["found"] and "[ci]" in check["found"]
    for later in ("token cache", "menda-cloud", "registry"):
        assert verdicts.status_of(later) == "skipped", verdicts.describe()


def test_an_expired_login_fails_the_token_cache(setup: Setup) -> None:
    write_profile(setup.box.home, f"[default]\nhost = {setup.world.cloud_url}\n")
    token, _ = setup.world.cloud.issue_user_token()
    write_user_token(setup.box.home, "default", token, 1_000_000, setup.world.cloud_url)
    verdicts = setup.doctor(env=without_identity(setup.env))
    check = verdicts.only_failure("token cache")
    assert "expired" in check["found"] and check["fix"] == "menda auth login"
    assert verdicts.status_of("menda-cloud") == "skipped"
    assert token not in verdicts.run.stdout + verdicts.run.stderr


def test_a_valid_login_holds(setup: Setup) -> None:
    write_profile(setup.box.home, f"[default]\nhost = {setup.world.cloud_url}\n")
    token, expires_at = setup.world.cloud.issue_user_token()
    write_user_token(setup.box.home, "default", token, expires_at, setup.world.cloud_url)
    verdicts = setup.doctor(env=without_identity(setup.env))
    assert verdicts.run.returncode == 0, verdicts.describe()
    assert "profile default (u2m)" in verdicts.named("identity")[0]["found"]
    assert token not in verdicts.run.stdout + verdicts.run.stderr


def test_menda_cloud_down_fails_that_link_alone(setup: Setup) -> None:
    env = {**setup.env, "MENDA_HOST": f"http://127.0.0.1:{closed_port()}"}
    verdicts = setup.doctor(env=env)
    check = verdicts.only_failure("menda-cloud")
    assert "cannot connect" in check["found"]
    assert verdicts.status_of("exchange") == "skipped"
    assert verdicts.status_of("registry") == "skipped"


def test_a_hanging_menda_cloud_costs_seconds_not_minutes(setup: Setup) -> None:
    setup.world.cloud.inject("oauth", delay=60, times=10)
    verdicts = setup.doctor("--timeout", "2")
    verdicts.only_failure("menda-cloud")
    # 2 s of ceiling plus two keyring start-ups and our own; generous for a loaded machine.
    assert verdicts.run.elapsed < 20, verdicts.run.describe()


def test_a_403_for_the_domain_fails_the_exchange(setup: Setup) -> None:
    setup.world.cloud.forbid(f"client:{setup.world.client_id}", setup.world.domain)
    verdicts = setup.doctor()
    check = verdicts.only_failure("exchange menda-private")
    assert "403" in check["found"] and "may not use that domain" in check["fix"]
    assert verdicts.status_of("menda-cloud") == "ok"
    assert verdicts.status_of("registry") == "skipped"


def test_an_index_refusing_the_token_fails_the_registry(setup: Setup) -> None:
    index = setup.world.index
    index.token_validator = lambda token, domain: False
    try:
        verdicts = setup.doctor()
    finally:
        index.token_validator = setup.world.cloud.is_valid_registry_token
    check = verdicts.only_failure("registry")
    assert "HTTP 401" in check["found"] and "refused the token" in check["found"]


def test_a_url_argument_is_checked_without_a_project(setup: Setup, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    verdicts = doctor(setup.env, elsewhere, setup.world.index_url())
    assert verdicts.run.returncode == 0, verdicts.describe()
    assert verdicts.status_of("indexes") == "ok"
    assert verdicts.status_of(f"registry {PROJECT_INDEX}") == "ok"


def test_no_secret_or_token_ever_shows(setup: Setup) -> None:
    in_url = sentinel("URLPASSWORD")
    bad_secret = sentinel("CLIENTSECRET")
    before = {t["token"] for t in setup.world.cloud.registry_tokens()}
    with_password = PROJECT_INDEX.replace("https://", f"https://aws:{in_url}@").replace(
        "menda-plugins", "other-repo"
    )
    env = {**setup.env, "UV_EXTRA_INDEX_URL": with_password}
    healthy = setup.doctor(env=env)
    # An unknown client (its own cache key): menda-cloud refuses the OAuth exchange.
    refused = setup.doctor(
        env={**env, "MENDA_CLIENT_ID": "unknown-bot", "MENDA_CLIENT_SECRET": bad_secret}
    )
    text = run([sys.executable, "-m", "menda_keyring.cli.doctor"], env, cwd=setup.project)
    issued = {t["token"] for t in setup.world.cloud.registry_tokens()} - before
    assert issued, "the healthy run made a real exchange"
    assert refused.only_failure("exchange")
    outputs = [healthy.run, refused.run, text]
    for result in outputs:
        seen = result.stdout + result.stderr
        for secret in (in_url, bad_secret, setup.world.client_secret, *issued):
            assert secret not in seen, (secret, seen)
    assert json.loads(healthy.run.stdout)["ok"] is True
    shown = healthy.named("uv index https://aws:***@")
    assert shown and "password in its URL" in shown[0]["found"], healthy.describe()


def test_a_project_file_uv_cannot_read_fails_the_indexes_link(setup: Setup) -> None:
    (setup.project / "pyproject.toml").write_text("[tool.uv\nindex = 1\n")
    check = setup.doctor().only_failure("indexes")
    assert "pyproject.toml" in check["found"] and "not valid TOML" in check["found"]
