"""A process's memory of its registry tokens: one exchange per key while the token is servable.

First :class:`TokenMemory` alone (threads, margins on a settable clock, errors, bounds),
then through :class:`InProcessResolver` and the backend against the real fake menda-cloud:
the registry exchanges it counts are the ones a long-lived Poetry or PDM would make.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from menda_keyring import errors, in_process
from menda_keyring.identity import resolve_identity
from menda_keyring.in_process import InProcessResolver
from menda_keyring.registry_keys import Key, login_scope, registry_key
from menda_keyring.retry import Deadline, RetryPolicy
from menda_keyring.token_memory import TokenMemory
from menda_keyring.tokens import AccessToken, RegistryToken
from menda_keyring.urls import RegistryTarget, parse_codeartifact_service
from tests.fakes.menda_cloud import FakeMendaCloud
from tests.support.env import CA_URL, m2m_env, write_profile, write_user_token
from tests.support.waiting import wait_until

pytestmark = pytest.mark.unit

TARGET = parse_codeartifact_service(CA_URL)
assert TARGET is not None
OTHER = RegistryTarget("other-domain", "058264169513", "eu-west-1")
FAST = RetryPolicy(max_attempts=2, base=0.01, cap=0.05)
KEY_A: Key = ("identity-a", TARGET)
KEY_B: Key = ("identity-b", TARGET)


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Issuer:
    """``obtain`` for the memory: counts calls, can hold them until released."""

    def __init__(self, clock: Clock, lifetime: float = 3600.0, hold: bool = False) -> None:
        self.clock = clock
        self.lifetime = lifetime
        self.calls = 0
        self.lock = threading.Lock()
        self.release = threading.Event()
        if not hold:
            self.release.set()

    def __call__(self) -> RegistryToken:
        with self.lock:
            self.calls += 1
            n = self.calls
        assert self.release.wait(30), "the test never released the exchange"
        now = self.clock()
        return RegistryToken(f"token-{n}", now + self.lifetime, now)


def deadline(seconds: float = 30.0) -> Deadline:
    return Deadline(seconds)


def test_a_servable_token_is_served_again_without_a_second_exchange() -> None:
    clock = Clock()
    memory, issue = TokenMemory(clock), Issuer(clock)
    first = memory.get(KEY_A, issue, deadline())
    clock.now += 1800
    assert memory.get(KEY_A, issue, deadline()) is first
    assert issue.calls == 1
    assert memory.get(KEY_B, issue, deadline()).token == "token-2"  # another key: its own


@pytest.mark.parametrize(
    ("lifetime", "margin"),
    [(3600.0, 60.0), (300.0, 30.0)],  # 60 s, or 10 % of a short lifetime (tokens.py)
)
def test_served_under_the_daemons_margins(lifetime: float, margin: float) -> None:
    clock = Clock()
    memory, issue = TokenMemory(clock), Issuer(clock, lifetime=lifetime)
    first = memory.get(KEY_A, issue, deadline())
    clock.now = first.expires_at - margin - 1
    assert first.servable(clock.now)
    assert memory.get(KEY_A, issue, deadline()) is first
    clock.now = first.expires_at - margin + 1
    assert not first.servable(clock.now)
    second = memory.get(KEY_A, issue, deadline())
    assert second is not first and issue.calls == 2


def test_threads_asking_at_once_wait_for_one_exchange() -> None:
    clock = Clock()
    memory, issue = TokenMemory(clock), Issuer(clock, hold=True)
    entered = threading.Semaphore(0)
    answers: list[str] = []

    def ask() -> None:
        entered.release()
        answers.append(memory.get(KEY_A, issue, deadline()).token)

    threads = [threading.Thread(target=ask) for _ in range(16)]
    for thread in threads:
        thread.start()
    for _ in threads:
        assert entered.acquire(timeout=30)
    wait_until(lambda: issue.calls >= 1, what="the first exchange")
    issue.release.set()
    for thread in threads:
        thread.join(30)
    assert answers == ["token-1"] * 16
    assert issue.calls == 1


def test_one_slow_key_does_not_hold_up_another() -> None:
    clock = Clock()
    memory = TokenMemory(clock)
    slow, quick = Issuer(clock, hold=True), Issuer(clock)
    thread = threading.Thread(target=memory.get, args=(KEY_A, slow, deadline()))
    thread.start()
    wait_until(lambda: slow.calls == 1, what="the slow exchange to start")
    assert memory.get(KEY_B, quick, deadline()).token == "token-1"
    slow.release.set()
    thread.join(30)


def test_a_waiter_gives_up_at_its_deadline() -> None:
    clock = Clock()
    memory, slow = TokenMemory(clock), Issuer(clock, hold=True)
    thread = threading.Thread(target=memory.get, args=(KEY_A, slow, deadline()))
    thread.start()
    wait_until(lambda: slow.calls == 1, what="the slow exchange to start")
    with pytest.raises(errors.ResolutionTimeoutError, match="another thread's registry exchange"):
        memory.get(KEY_A, slow, deadline(0.05))
    slow.release.set()
    thread.join(30)


def test_errors_are_not_remembered() -> None:
    clock = Clock()
    memory, issue = TokenMemory(clock), Issuer(clock)

    def failing() -> RegistryToken:
        raise errors.MendaCloudAPIError("menda-cloud said no", 503)

    with pytest.raises(errors.MendaCloudAPIError):
        memory.get(KEY_A, failing, deadline())
    assert memory.get(KEY_A, issue, deadline()).token == "token-1"


def test_a_forgotten_token_is_not_served_again() -> None:
    clock = Clock()
    memory, issue = TokenMemory(clock), Issuer(clock)
    memory.get(KEY_A, issue, deadline())
    assert memory.forget(KEY_A) is True
    assert memory.forget(KEY_A) is False
    assert memory.get(KEY_A, issue, deadline()).token == "token-2"


def test_a_token_whose_key_changed_meanwhile_is_handed_out_but_not_kept() -> None:
    clock = Clock()
    memory, issue = TokenMemory(clock), Issuer(clock)
    assert memory.get(KEY_A, issue, deadline(), still_ours=lambda: False).token == "token-1"
    assert memory.get(KEY_A, issue, deadline()).token == "token-2"


def test_memory_is_bounded_least_recently_used_first() -> None:
    clock = Clock()
    memory, issue = TokenMemory(clock, max_keys=2), Issuer(clock)
    memory.get(KEY_A, issue, deadline())
    memory.get(KEY_B, issue, deadline())
    memory.get(KEY_A, issue, deadline())  # A is now the most recently used
    memory.get(("identity-c", TARGET), issue, deadline())
    assert len(memory) == 2
    assert memory.get(KEY_A, issue, deadline()).token == "token-1"
    assert memory.get(KEY_B, issue, deadline()).token == "token-4"  # B had gone


# -- the resolver and the backend, against the fake menda-cloud ----------------------------------


def resolver(env: dict[str, str], memory: TokenMemory) -> InProcessResolver:
    return InProcessResolver(env, policy=FAST, memory=memory)


def test_a_process_makes_one_exchange_per_identity_and_domain(
    cloud: FakeMendaCloud, home: Path
) -> None:
    cloud.add_domain(OTHER.domain, OTHER.owner)
    env, memory = m2m_env(home, cloud), TokenMemory()
    tokens = {resolver(env, memory).resolve(TARGET).token for _ in range(5)}
    assert len(tokens) == 1
    assert cloud.counts()["registry"] == 1
    other = resolver(env, memory).resolve(OTHER).token
    assert other not in tokens and cloud.is_valid_registry_token(other, OTHER.domain)
    assert cloud.counts()["registry"] == 2
    # Without memory (how every test but these resolves) each call exchanges.
    InProcessResolver(env, policy=FAST).resolve(TARGET)
    assert cloud.counts()["registry"] == 3


def test_parallel_threads_of_one_process_make_one_exchange(
    cloud: FakeMendaCloud, home: Path
) -> None:
    env, memory = m2m_env(home, cloud), TokenMemory()
    cloud.inject("registry", delay=0.5)  # every thread arrives while the first one waits
    barrier = threading.Barrier(12)
    answers: list[str] = []

    def ask() -> None:
        barrier.wait(30)
        answers.append(resolver(env, memory).resolve(TARGET).token)

    threads = [threading.Thread(target=ask) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(answers) == 12 and len(set(answers)) == 1
    assert cloud.counts()["registry"] == 1
    assert cloud.counts()["oauth"] == 1


def test_a_token_too_close_to_expiry_is_exchanged_again(cloud: FakeMendaCloud, home: Path) -> None:
    clock = Clock(time.time())  # the memory's clock, moved on by hand
    env, memory = m2m_env(home, cloud), TokenMemory(clock)
    first = resolver(env, memory).resolve(TARGET)
    clock.now = first.expires_at - first.min_remaining() - 1
    assert resolver(env, memory).resolve(TARGET) is first
    clock.now += 2
    second = resolver(env, memory).resolve(TARGET)
    assert second.token != first.token
    assert cloud.counts()["registry"] == 2


def sign_in(home: Path, cloud: FakeMendaCloud, user: str) -> str:
    token, expires_at = cloud.issue_user_token(user, 3600)
    write_user_token(home, "default", token, expires_at, cloud.url)
    return token


def test_a_user_key_names_the_login(cloud: FakeMendaCloud, home: Path) -> None:
    write_profile(home, f"[default]\nhost = {cloud.url}\n")
    env, memory = {"HOME": str(home)}, TokenMemory()
    alice = sign_in(home, cloud, "alice")
    identity = resolve_identity(env, home)
    key = resolver(env, memory).memory_key(identity, TARGET)
    login = AccessToken(alice, 0, cloud.url, "u2m")
    assert key == registry_key(identity, TARGET, login_scope(login))
    assert alice not in repr(key)

    first = resolver(env, memory).resolve(TARGET).token
    assert resolver(env, memory).resolve(TARGET).token == first
    assert cloud.counts()["registry"] == 1
    sign_in(home, cloud, "bob")  # a login as someone else takes effect at once
    second = resolver(env, memory).resolve(TARGET).token
    assert second != first and cloud.counts()["registry"] == 2
    # menda auth logout: no login, no token, whatever the memory holds.
    (home / ".menda" / "tokens" / "cache" / ".token").unlink()
    with pytest.raises(errors.NoCachedLoginError):
        resolver(env, memory).resolve(TARGET)


@pytest.fixture
def backend_env(monkeypatch: pytest.MonkeyPatch, cloud: FakeMendaCloud, home: Path) -> None:
    """The backend as Poetry's or PDM's process sees it: no daemon, a fresh process memory."""
    monkeypatch.setattr(in_process, "PROCESS_MEMORY", TokenMemory())
    for name in list(os.environ):
        if name.startswith("MENDA_"):
            monkeypatch.delenv(name)
    for name, value in m2m_env(home, cloud, MENDA_CREDD="off").items():
        monkeypatch.setenv(name, value)


@pytest.mark.usefixtures("backend_env")
def test_the_backend_remembers_and_forgets_on_delete_password(cloud: FakeMendaCloud) -> None:
    from menda_keyring.backend import MendaCodeArtifactKeyring

    backend = MendaCodeArtifactKeyring()
    first = backend.get_password(CA_URL, "aws")
    credential = backend.get_credential(CA_URL.replace("aws@", ""), None)
    assert credential is not None and credential.password == first
    assert cloud.counts()["registry"] == 1
    # A caller whose request the registry refused says so: the token is not served again.
    backend.delete_password(CA_URL, "aws")
    second = backend.get_password(CA_URL, "aws")
    assert second is not None and second != first
    assert cloud.counts()["registry"] == 2
