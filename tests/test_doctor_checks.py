"""Doctor's verdicts from facts, without I/O: each broken fact fails its link, and only it."""

from __future__ import annotations

from pathlib import Path

import pytest

from menda_keyring.cli import doctor_checks as dc
from menda_keyring.cli.doctor import render
from menda_keyring.cli.project_indexes import IndexRef
from menda_keyring.errors import MendaCloudAPIError, ProfileNotFoundError
from menda_keyring.identity import Identity
from menda_keyring.urls import RegistryTarget

pytestmark = pytest.mark.unit

OURS = (dc.OUR_BACKEND, 9.9)
LISTED = (
    ("keyring.backends.fail.Keyring", 0.0),
    ("keyring.backends.chainer.ChainerBackend", -1.0),
    OURS,
)
CA = "https://menda-private-058264169513.d.codeartifact.eu-west-1.amazonaws.com/pypi/r/simple/"
TARGET = RegistryTarget("menda-private", "058264169513", "eu-west-1")
NOW = 1_800_000_000.0
USER = Identity("profile", "u2m", "https://api.example", "u2m:default", profile="default")


def statuses(checks: list[dc.Check]) -> dict[str, str]:
    return {c.name: c.status for c in checks}


def test_parse_backend_list_reads_keyrings_own_lines() -> None:
    text = (
        "keyring.backends.fail.Keyring (priority: 0)\n"
        "keyring.backends.chainer.ChainerBackend (priority: -1)\n"
        "menda_keyring.backend.MendaCodeArtifactKeyring (priority: 9.9)\n"
        "noise\n"
    )
    assert dc.parse_backend_list(text) == LISTED


def test_keyring_healthy_by_priority_and_through_the_chainer() -> None:
    alone = dc.keyring_checks(dc.KeyringFacts("/bin/keyring", "/py", LISTED))
    assert statuses(alone) == dict.fromkeys(
        ("keyring on PATH", "keyring backend", "keyring selection"), "ok"
    )
    assert "picks menda_keyring" in alone[2].found
    chained = (*LISTED, ("keyring.backends.SecretService.Keyring", 5.0))
    chained = tuple(b if b[0] != dc.CHAINER else (dc.CHAINER, 10.0) for b in chained)
    assert "asks ours first" in dc.keyring_checks(dc.KeyringFacts("/k", None, chained))[2].found


@pytest.mark.parametrize(
    ("facts", "broken", "after"),
    [
        (dc.KeyringFacts(None), "keyring on PATH", "skipped"),
        (dc.KeyringFacts("/k", "/other/python", LISTED[:2]), "keyring backend", "skipped"),
        (dc.KeyringFacts("/k", None, None, "boom"), "keyring backend", "skipped"),
        (
            dc.KeyringFacts("/k", None, LISTED, env_backend="keyring.backends.null.Keyring"),
            "keyring selection",
            "fail",
        ),
        (
            dc.KeyringFacts(
                "/k",
                None,
                LISTED,
                config_path="/c/keyringrc.cfg",
                config_backend="keyring.backends.null.Keyring",
            ),
            "keyring selection",
            "fail",
        ),
    ],
)
def test_each_broken_keyring_fact_fails_its_link(
    facts: dc.KeyringFacts, broken: str, after: str
) -> None:
    result = statuses(dc.keyring_checks(facts))
    assert [n for n, s in result.items() if s == "fail"] == [broken]
    assert result["keyring selection"] == after
    failed = next(c for c in dc.keyring_checks(facts) if c.ok is False)
    assert failed.fix


def test_project_checks_name_the_index_that_uv_will_not_authenticate() -> None:
    indexes = [
        IndexRef("good", CA, "p [[tool.uv.index]]", authenticate="always"),
        IndexRef("bare", CA, "p [[tool.uv.index]]"),
        IndexRef(None, CA.replace("https://", "https://aws@"), "UV_INDEX_URL", "aws"),
        IndexRef(None, CA.replace("https://", "https://bob@"), "UV_INDEX", "bob"),
        IndexRef(None, "https://pypi.org/simple", "UV_INDEX"),
    ]
    result = statuses(dc.project_checks(indexes, "subprocess", None, Path("/p")))
    assert result["uv index good"] == "ok"
    assert result["uv index bare"] == "fail"
    assert result[f"uv index {CA.replace('https://', 'https://aws@')}"] == "ok"
    assert result[f"uv index {CA.replace('https://', 'https://bob@')}"] == "fail"
    assert result["uv keyring-provider"] == "ok"
    assert "pip keyring-provider" not in result
    bare = next(
        c for c in dc.project_checks(indexes, None, None, Path("/p")) if c.name == "uv index bare"
    )
    assert 'authenticate = "always"' in bare.fix


@pytest.mark.parametrize(
    ("uv", "pip", "failed"),
    [
        (None, None, ["uv keyring-provider"]),
        ("subprocess", "disabled", ["pip keyring-provider"]),
        ("subprocess", None, []),
    ],
)
def test_keyring_providers(uv: str | None, pip: str | None, failed: list[str]) -> None:
    indexes = [
        IndexRef("a", CA.replace("https://", "https://aws@"), "s", "aws"),
        IndexRef(None, CA, "PIP_INDEX_URL", tool="pip"),
    ]
    checks = dc.project_checks(indexes, uv, pip, Path("/p"))
    assert [c.name for c in checks if c.ok is False] == failed


def test_no_codeartifact_index_is_not_a_failure() -> None:
    [check] = dc.project_checks(
        [IndexRef(None, "https://pypi.org/simple", "s")], None, None, Path("/p")
    )
    assert check.ok is True and "no CodeArtifact index" in check.found


def test_identity_error_carries_its_fix() -> None:
    error = ProfileNotFoundError("No profile [ci] in /h/.menda/mendacfg")
    check = dc.identity_check(None, error, [], Path("/h/.menda/mendacfg"))
    assert check.ok is False and "ProfileNotFoundError" in check.found
    assert "MENDA_PROFILE_ID" in check.fix
    partial = dc.identity_check(USER, None, ["MENDA_CLIENT_ID"], Path("/cfg"))
    assert partial.ok and "MENDA_CLIENT_ID set but not all three" in partial.found


def test_files_fail_on_a_readable_secret_and_an_untrusted_cache() -> None:
    base = dc.FileFacts(Path("/h/.menda/mendacfg"), 0o600, True, Path("/h/.menda"), 0o700)
    assert dc.files_check(base).ok is True
    loose = dc.files_check(dc.FileFacts(base.config, 0o644, True, base.menda_dir, 0o700))
    assert loose.ok is False and "chmod 600" in loose.fix
    harmless = dc.FileFacts(base.config, 0o644, False, base.menda_dir, 0o700)
    assert dc.files_check(harmless).ok is True
    bad_cache = dc.FileFacts(base.config, 0o600, True, base.menda_dir, 0o700, "folder is a link")
    assert dc.files_check(bad_cache).ok is False


def cache(**kw: object) -> dc.CacheFacts:
    return dc.CacheFacts(Path("/c/.token"), "u2m:default", **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("facts", "ok"),
    [
        (cache(present=False), False),
        (cache(present=True, matches=False), False),
        (cache(present=True, matches=True, expires_at=NOW + 3600), True),
        (cache(present=True, matches=True, expires_at=NOW + 30), False),  # inside the margin
        (cache(present=True, matches=True, expires_at=NOW - 10, refreshable=True), True),
    ],
)
def test_user_login_in_the_cache(facts: dc.CacheFacts, ok: bool) -> None:
    check = dc.token_cache_check(USER, facts, NOW)
    assert check.ok is ok, check
    if not ok:
        assert check.fix == "menda auth login"


def test_machine_identity_needs_no_cached_token() -> None:
    machine = Identity("env", "m2m", "https://api", "m2m:client:x", client_id="x")
    check = dc.token_cache_check(machine, dc.CacheFacts(Path("/c"), "m2m:client:x", False), NOW)
    assert check.ok is True and "OAuth" in check.found


@pytest.mark.parametrize(
    ("state", "ok"),
    [
        ("off", True),
        ("unsupported", True),
        ("absent", True),
        ("running", True),
        ("other-release", True),
        ("silent", False),
        ("untrusted", False),
    ],
)
def test_daemon_states(state: str, ok: bool) -> None:
    assert dc.daemon_check(dc.DaemonFacts("/s", state, 42, "0.2.0")).ok is ok


NET = dc.NetworkFacts("https://api.example", None, "the system trust store")


def test_unreachable_cloud_fails_once_and_skips_the_exchanges() -> None:
    down = dc.Exchange(
        TARGET, "in process", 2.0, MendaCloudAPIError("menda-cloud x: no answer within 2.0 s")
    )
    result = dc.cloud_checks(NET, [down], NOW)
    assert [c.status for c in result] == ["fail", "skipped"]
    assert "did not answer in time" in result[0].fix


def test_a_refused_exchange_fails_only_the_exchange() -> None:
    refused = dc.Exchange(TARGET, "in process", 0.1, MendaCloudAPIError("HTTP 403 forbidden", 403))
    result = dc.cloud_checks(NET, [refused], NOW)
    assert [c.status for c in result] == ["ok", "fail"]
    assert "may not use that domain" in result[1].fix
    assert "TLS verified" in result[0].found


def test_registry_answers() -> None:
    def answer(status: int | None) -> dc.Check:
        return dc.registry_check(dc.RegistryAnswer(CA, TARGET, status, 0.1, "boom"))

    assert answer(200).ok and answer(301).ok
    assert answer(401).ok is False and "refused the token" in answer(401).found
    assert answer(404).ok is False and answer(None).ok is False


def test_urls_are_shown_without_passwords_and_fetched_without_credentials() -> None:
    with_token = CA.replace("https://", "https://aws:s3cr3t-token@")
    assert "s3cr3t" not in dc.display_url(with_token)
    assert dc.display_url(with_token).startswith("https://aws:***@menda-private")
    assert dc.simple_index_url(with_token) == CA
    assert dc.simple_index_url(CA.rstrip("/")) == CA


def test_render_is_one_line_per_check_with_the_fix_on_failures() -> None:
    lines = render(
        [
            dc.Check("a", True, "fine"),
            dc.Check("b", False, "broken", "do this"),
            dc.skipped("c", "b broke"),
        ]
    ).splitlines()
    assert lines[1:] == [
        "ok    a: fine",
        "FAIL  b: broken  -> do this",
        "skip  c: b broke",
        "1 broken: b",
    ]
