"""Hardening: every way menda-cloud can fail, on each endpoint (the refresh grant of a
login included), through the daemon and in process, gives the keyring CLI a typed error
with a clear message within the ceiling.

One real daemon serves the module. Each case of the fault table (one test per fault,
endpoint and path: ``-k daemon-registry-timeout``) has its own fake menda-cloud and HOME,
so nothing cached or injected for another can answer; the outage test has its own client
id on the module's fake.
"""

from __future__ import annotations

import contextlib
import secrets
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.menda_cloud import FakeMendaCloud
from tests.fakes.tls_front import tls_front
from tests.support.daemon import Daemon
from tests.support.env import (
    base_env,
    sentinel,
    short_tmpdir,
    write_profile,
    write_user_login,
    write_user_token,
)
from tests.support.errors import typed_error
from tests.support.procs import keyring_get
from tests.support.sockets import closed_port
from tests.support.waiting import wait_until

CEILING = 6.0
#: keyring's own start-up plus the shim's fallback margin, on a slow CI machine.
SLACK = 5.0
MODES = ("in-process", "daemon")


@dataclass
class Shared:
    cloud: FakeMendaCloud
    daemon: Daemon


@contextlib.contextmanager
def cloud_and_daemon() -> Iterator[Shared]:
    with short_tmpdir() as tmp, FakeMendaCloud() as cloud:
        # No SSL_CERT_FILE: the daemon trusts the system store only, as in process.
        with Daemon(base_env(tmp / "daemon-home"), tmp / "run" / "credd.sock") as daemon:
            yield Shared(cloud, daemon)
            assert daemon.alive(), daemon.log()


@pytest.fixture(scope="module")
def table_daemon() -> Iterator[Daemon]:
    """The daemon of the fault table: nothing else asks it, so its counters add up."""
    with cloud_and_daemon() as shared:
        yield shared.daemon


@dataclass
class Case:
    """One fault: what to inject where, and what ``keyring get`` must then report."""

    name: str
    endpoint: str  # "oauth" or "registry": where the fault is injected
    inject: dict[str, Any] = field(default_factory=dict)
    classes: tuple[str, ...] | None = None  # expected error classes; None: a token
    fragments: tuple[str, ...] = ()
    #: "m2m" / "u2m" / "u2m-expired" (a login to refresh); default: m2m for oauth faults,
    #: u2m-expired for refresh, u2m for registry
    identity: str = ""
    host: str = ""  # "refused" or "tls": a host that is not the fake itself
    counts: dict[str, int] = field(default_factory=dict)  # fake counters afterwards
    not_fragments: tuple[str, ...] = ()  # must not be in the message
    min_elapsed: float = 0.0
    max_elapsed: float = CEILING + SLACK


API = ("MendaCloudAPIError",)
TIMEOUTS = ("MendaCloudAPIError", "ResolutionTimeoutError")
WRONG_SHAPE = {
    "oauth": {"access_token": 5, "token_type": "Bearer", "expires_in": 3600},
    "refresh": {"access_token": "mut_x", "token_type": "Bearer", "expires_in": 0},
    "registry": {"token": "", "expiration": "tomorrow"},
}
DEFAULT_IDENTITY = {"oauth": "m2m", "refresh": "u2m-expired", "registry": "u2m"}


def cases(endpoint: str) -> list[Case]:
    once = {endpoint: 1}
    table = [
        Case("timeout", endpoint, {"delay": CEILING + 4, "times": 3}, TIMEOUTS),
        Case("slow", endpoint, {"delay": 1.5}, None, min_elapsed=1.5),
        *(
            Case(
                str(status),
                endpoint,
                {"status": status, "times": 10},
                API,
                (f"HTTP {status}", "gave up after 4 attempts"),
                counts={endpoint: 4},
            )
            for status in (500, 502, 503, 429)
        ),
        Case(
            "429-retry-after",
            endpoint,
            {"status": 429, "retry_after": 1, "times": 10},
            API,
            ("HTTP 429",),
            min_elapsed=3.0,  # three Retry-After: 1 waits between four attempts
        ),
        Case(
            "429-retry-after-then-ok",
            endpoint,
            {"status": 429, "retry_after": 1},
            None,
            counts={endpoint: 2},
            min_elapsed=1.0,
        ),
        Case("dropped", endpoint, {"close": True, "times": 10}, API, ("gave up after 4 attempts",)),
        Case("403", endpoint, {"status": 403}, API, ("HTTP 403",), counts=once),
        Case("404", endpoint, {"status": 404}, API, ("HTTP 404",), counts=once),
        Case(
            "non-json",
            endpoint,
            {"status": 200, "body": "<html>maintenance</html>"},
            API,
            ("not JSON",),
            counts=once,
        ),
        Case(
            "non-json-500",
            endpoint,
            {"status": 500, "body": b"\x00\xff oops", "times": 10},
            API,
            ("HTTP 500",),
        ),
        Case(
            "wrong-shape",
            endpoint,
            {"status": 200, "body": WRONG_SHAPE[endpoint]},
            API,
            ("wrong shape",),
            counts=once,
        ),
        Case(
            "refused",
            endpoint,
            {},
            API,
            ("cannot connect", "gave up after 4 attempts"),
            host="refused",
        ),
        Case(
            "tls",
            endpoint,
            {},
            API,
            ("TLS certificate verification failed",),
            host="tls",
            counts={endpoint: 0},
            not_fragments=("attempt",),  # reported at once, not retried
        ),
    ]
    if endpoint == "oauth":
        table += [
            Case(
                "401",
                endpoint,
                {"status": 401},
                API,
                ("HTTP 401", "client_id and client_secret"),
                counts=once,
            ),
            # An access token with 1 s left still serves the one exchange it was fetched for.
            Case("expired", endpoint, {"expired": True}, None),
        ]
    elif endpoint == "refresh":
        table += [
            *(
                Case(
                    f"{status}-{code}",
                    endpoint,
                    {"status": status},
                    ("NoCachedLoginError",),
                    (code, "Run menda auth login"),
                    counts={"refresh": 1, "registry": 0},
                )
                for status, code in ((400, "invalid_grant"), (401, "invalid_client"))
            ),
            Case("expired", endpoint, {"expired": True}, None, counts={"refresh": 1}),
        ]
    else:
        table += [
            Case("expired", endpoint, {"expired": True}, API, ("already expired",), counts=once),
            Case(
                "401-user",
                endpoint,
                {"status": 401},
                ("NoCachedLoginError",),
                ("menda auth login",),
                counts={"oauth": 0, "registry": 1},
            ),
            Case(
                "401-machine-once",
                endpoint,
                {"status": 401},
                None,
                identity="m2m",
                counts={"oauth": 2, "oauth_ok": 2, "registry": 2, "registry_ok": 1},
            ),
            Case(
                "401-machine-twice",
                endpoint,
                {"status": 401, "times": 2},
                API,
                ("HTTP 401", "also with a freshly issued token"),
                identity="m2m",
                counts={"oauth": 2, "registry": 2},
            ),
        ]
    return table


def run_case(case: Case, mode: str, daemon: Daemon, workdir: Path) -> list[str]:
    """Run one case against its own fake menda-cloud; returns what went wrong."""
    problems: list[str] = []
    home = workdir / f"{mode}-{case.endpoint}-{case.name}"
    home.mkdir()
    with FakeMendaCloud() as cloud:
        secret = sentinel()
        cloud.add_client("ci-bot", secret)
        tls = None
        host = cloud.url
        if case.host == "refused":
            host = f"http://127.0.0.1:{closed_port()}"
        elif case.host == "tls":
            tls = tls_front(cloud)
            threading.Thread(target=tls.serve_forever, daemon=True).start()
            host = f"https://localhost:{tls.server_address[1]}"
        try:
            env = base_env(home, MENDA_KEYRING_TIMEOUT=str(CEILING))
            if mode == "daemon":
                env["MENDA_CREDD_SOCKET"] = daemon.socket
            else:
                env["MENDA_CREDD"] = "off"
            identity = case.identity or DEFAULT_IDENTITY[case.endpoint]
            if identity == "m2m":
                env.update(MENDA_CLIENT_ID="ci-bot", MENDA_CLIENT_SECRET=secret, MENDA_HOST=host)
            elif identity == "u2m-expired":
                write_profile(home, f"[default]\nhost = {host}\nauth_type = u2m\n")
                login = cloud.issue_user_login(f"user-{case.name}", lifetime=0)
                write_user_login(home, "default", login, host)
            else:
                write_profile(home, f"[default]\nhost = {host}\nauth_type = u2m\n")
                token, expires_at = cloud.issue_user_token(f"user-{case.name}")
                write_user_token(home, "default", token, expires_at, host)
            if case.inject:
                cloud.inject(case.endpoint, **case.inject)
            result = keyring_get(env, timeout=CEILING * 4 + 30)
            counts = cloud.counts()
        finally:
            if tls is not None:
                tls.shutdown()
                tls.server_close()
    where = f"[{mode} {case.endpoint} {case.name}]"
    if case.classes is None:
        if not result.ok or not cloud.is_valid_registry_token(result.stdout.strip()):
            problems.append(f"{where} expected a token:\n{result.describe()}")
    else:
        name, message = typed_error(result.stderr)
        if result.ok or name not in case.classes or "Traceback" in result.stderr:
            problems.append(f"{where} expected {case.classes}:\n{result.describe()}")
        problems += [
            f"{where} {fragment!r} not in {message!r}"
            for fragment in case.fragments
            if fragment not in message
        ]
        problems += [
            f"{where} {fragment!r} in {message!r}"
            for fragment in case.not_fragments
            if fragment in message
        ]
        if result.stdout.strip():
            problems.append(f"{where} something on stdout of a failure: {result.stdout!r}")
    if not case.min_elapsed <= result.elapsed < case.max_elapsed:
        problems.append(
            f"{where} took {result.elapsed:.2f} s, expected "
            f"[{case.min_elapsed}, {case.max_elapsed}) s:\n{result.describe()}"
        )
    for key, value in case.counts.items():
        if counts.get(key, 0) != value:  # refresh counters appear once counted
            problems.append(f"{where} fake counts {counts}, expected {key}={value}")
    return problems


TABLE = [
    (mode, case) for mode in MODES for case in cases("oauth") + cases("refresh") + cases("registry")
]


def case_id(mode: str, case: Case) -> str:
    return f"{mode}-{case.endpoint}-{case.name}"


class FaultRuns:
    """The selected cases of this module, run six at a time as soon as the first is asked
    for: each has its own fake menda-cloud and HOME, so none sees another's state (through
    the daemon, its cap of four upstream calls at once may hold one back briefly, well
    within the ceiling)."""

    def __init__(self, daemon: Daemon, workdir: Path, selected: list[tuple[str, Case]]) -> None:
        self.daemon = daemon
        self.daemon_cases = sum(1 for mode, _ in selected if mode == "daemon")
        self.requests_before = self.daemon.counters()["requests"]
        self.pool = ThreadPoolExecutor(max_workers=6)
        self.futures = {
            case_id(mode, case): self.pool.submit(run_case, case, mode, self.daemon, workdir)
            for mode, case in selected
        }

    def problems(self, mode: str, case: Case) -> list[str]:
        return self.futures[case_id(mode, case)].result()

    def close(self) -> None:
        self.pool.shutdown(wait=True)


@pytest.fixture(scope="module")
def fault_runs(
    table_daemon: Daemon, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[FaultRuns]:
    selected = [
        (item.callspec.params["mode"], item.callspec.params["case"])
        for item in request.session.items
        if item.module is request.module and item.originalname == TABLE_TEST
    ]
    runs = FaultRuns(table_daemon, tmp_path_factory.mktemp("faults"), selected)
    try:
        yield runs
    finally:
        runs.close()
    # Every daemon case was answered by the daemon, not by an in-process fallback.
    requests = table_daemon.counters()["requests"]
    assert requests == runs.requests_before + runs.daemon_cases, "a case fell back in process"
    assert table_daemon.alive(), table_daemon.log()


TABLE_TEST = "test_a_fault_gives_a_typed_error_within_the_ceiling"


@pytest.mark.parametrize(("mode", "case"), TABLE, ids=[case_id(mode, case) for mode, case in TABLE])
def test_a_fault_gives_a_typed_error_within_the_ceiling(
    fault_runs: FaultRuns, mode: str, case: Case
) -> None:
    problems = fault_runs.problems(mode, case)
    assert not problems, "\n\n".join(problems)


# -- the daemon through an outage --------------------------------------------------------------


def test_daemon_serves_valid_tokens_through_an_outage_and_recovers_on_its_own(
    tmp_path: Path,
) -> None:
    """Prime a 20 s token; menda-cloud fails the first refresh; every get is still answered
    by the daemon, and once the faults run dry the daemon refreshes by itself."""
    with cloud_and_daemon() as shared:
        check_outage(shared.cloud, shared.daemon, tmp_path)


def check_outage(cloud: FakeMendaCloud, daemon: Daemon, tmp_path: Path) -> None:
    client_id, secret = f"c-{secrets.token_hex(4)}", sentinel()
    cloud.add_client(client_id, secret)
    cloud.configure(registry_token_lifetime=20)
    env = base_env(
        tmp_path,
        MENDA_CLIENT_ID=client_id,
        MENDA_CLIENT_SECRET=secret,
        MENDA_HOST=cloud.url,
        MENDA_CREDD_SOCKET=daemon.socket,
    )

    def get() -> str:
        hits = daemon.counters()["hits"]
        result = keyring_get(env)
        assert result.ok, result.describe()
        assert result.elapsed < 5.0, result.describe()
        assert daemon.counters()["hits"] == hits + 1, "answered by the daemon from memory"
        return result.token

    try:
        first = keyring_get(env)
        token = first.token
        before = daemon.counters()
        # Two refresh attempts fail; a background refresh makes one HTTP try per attempt
        # (its own timer does the capped, jittered retrying), so that is two calls.
        cloud.inject("registry", status=503, retry_after=0, times=2)
        cloud.reset_counts()

        def refresh_failed() -> bool:
            return daemon.counters()["refresh_failures"] > before["refresh_failures"]

        gets = 0
        while not refresh_failed():
            assert get() == token, "while the token is valid the daemon serves it"
            gets += 1
            assert gets < 200
            with contextlib.suppress(AssertionError):
                wait_until(refresh_failed, timeout=1.0, interval=0.05)
        # The first refresh of a new token comes anywhere in its first 80 % (spread across a
        # fleet: refresh.first_share), so how many gets fit before it varies; at least one
        # was served from memory while menda-cloud failed.
        assert gets >= 1
        assert cloud.counts()["registry"] >= 1 and cloud.counts()["registry_ok"] == 0
        assert cloud.counts()["oauth"] == 0
        # Still answered after the failed refresh, by the daemon, with a valid token.
        assert cloud.is_valid_registry_token(get())
        # The faults have run dry: the daemon's own retry refreshes the token.
        wait_until(
            lambda: daemon.counters()["refreshes"] > before["refreshes"],
            timeout=20,
            what="the daemon to refresh by itself once menda-cloud recovers",
        )
        assert cloud.counts() == {"oauth": 0, "oauth_ok": 0, "registry": 3, "registry_ok": 1}
        fresh = get()
        assert fresh != token
        assert cloud.is_valid_registry_token(fresh)
        assert cloud.counts()["registry_ok"] == 1, "the get after recovery is served from memory"
        status = daemon.cli_status_json()
        mine = [e for e in status["entries"] if client_id in e["identity"]]
        assert mine and mine[0]["state"] == "valid" and mine[0]["refresh_failures"] == 0
    finally:
        cloud.clear_faults()
        cloud.configure(registry_token_lifetime=43200)
