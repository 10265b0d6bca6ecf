"""Pre-warm's decisions, without I/O: what is remembered, when a pair is warmed, the bounds,
the state file's content; then the pre-warmer with the broker on a virtual clock.

Times are in UTC (``tz``) from a fixed Monday, so every expectation is exact.
"""

from __future__ import annotations

import datetime
import json
import secrets
import stat
import time
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest

from menda_credd import prewarm, prewarm_file
from menda_credd.broker import Broker
from menda_credd.prewarm import LATE, LEAD, PrewarmMemory, Record, Subject, decode
from menda_credd.prewarmer import Prewarmer, subject_of
from menda_credd.status_report import format_status
from menda_keyring.cloud_protocol import HttpRequest, HttpResponse
from menda_keyring.errors import MendaError
from menda_keyring.identity import resolve_identity
from menda_keyring.retry import Deadline
from menda_keyring.urls import RegistryTarget
from tests.support.env import write_profile
from tests.support.virtual_clock import run_virtual
from tests.test_credd_broker import QUICK, Upstream

pytestmark = pytest.mark.unit

UTC = datetime.timezone.utc
TARGET = RegistryTarget("menda-private", "058264169513", "eu-west-1")
OTHER = RegistryTarget("other-domain", "058264169513", "eu-west-1")
SUBJECT = Subject("profile", "/home/alice", "default", "")
LABEL = "profile default (m2m) at https://api.example.menda.cloud"
HOUR = 3600.0
DAY = 86400.0
#: Monday 2026-11-02 00:00 UTC.
MONDAY = datetime.datetime(2026, 11, 2, tzinfo=UTC).timestamp()


def at(day: int, hour: float) -> float:
    """``day`` days after MONDAY (0 = Monday), at ``hour`` o'clock UTC."""
    return MONDAY + day * DAY + hour * HOUR


def memory(**kwargs: object) -> PrewarmMemory:
    return PrewarmMemory(tz=UTC, **kwargs)  # type: ignore[arg-type]


def working_days(mem: PrewarmMemory, days: range, hour: float = 9.0) -> None:
    """A developer who asks at ``hour`` and hourly until 18:00 on each of ``days``."""
    for day in days:
        if day % 7 >= 5:
            continue  # the weekend
        for n in range(int(18 - hour) + 1):
            mem.asked(SUBJECT, TARGET, LABEL, at(day, hour + n))


def record(mem: PrewarmMemory) -> Record:
    return mem.records[(SUBJECT, TARGET)]


# -- when ------------------------------------------------------------------------------------


def test_a_pair_first_asked_at_nine_is_warmed_shortly_before_nine_the_next_day() -> None:
    mem = memory()
    working_days(mem, range(1, 2))  # a Tuesday
    assert mem.next_at(record(mem), at(1, 20)) == at(2, 9) - LEAD
    assert mem.next_due(at(1, 20)) == at(2, 9) - LEAD
    assert mem.due(at(2, 8)) == []
    assert mem.due(at(2, 9) - LEAD) == [record(mem)]


def test_a_pair_already_asked_for_today_is_not_warmed_today() -> None:
    mem = memory()
    working_days(mem, range(0, 2))
    mem.asked(SUBJECT, TARGET, LABEL, at(2, 7))  # an early start on Wednesday
    assert mem.due(at(2, 9)) == []
    # Three days known, so the earliest first request sets the time (a lower quartile).
    assert mem.next_at(record(mem), at(2, 9)) == at(3, 7) - LEAD


def test_a_handled_day_is_not_warmed_twice() -> None:
    mem = memory()
    working_days(mem, range(0, 1))
    assert mem.due(at(1, 8.9)) == [record(mem)]
    assert mem.due(at(1, 8.95)) == []
    assert mem.next_due(at(1, 8.95)) == at(2, 9) - LEAD


def test_weekdays_without_a_request_are_learnt_and_skipped() -> None:
    mem = memory()
    working_days(mem, range(0, 7))  # Monday to Friday of week one
    # The first Saturday is not known to be a day off yet: warmed once ...
    assert mem.next_at(record(mem), at(4, 20)) == at(5, 9) - LEAD
    # ... and from the Sunday on, the Saturday is known to be one.
    assert mem.next_at(record(mem), at(6, 0.5)) == at(6, 9) - LEAD
    working_days(mem, range(7, 12))  # week two, Monday to Friday
    assert mem.next_at(record(mem), at(11, 20)) == at(14, 9) - LEAD  # Monday, not the weekend


def test_one_early_morning_does_not_move_the_time() -> None:
    mem = memory()
    working_days(mem, range(0, 1), hour=6.0)  # one 06:00 Monday
    working_days(mem, range(1, 5), hour=9.0)  # then 09:00 every day
    assert mem.next_at(record(mem), at(4, 20)) == at(5, 9) - LEAD


def test_a_day_the_daemon_slept_through_is_warmed_late_but_not_at_night() -> None:
    mem = memory()
    working_days(mem, range(0, 1))
    late = at(1, 9) - LEAD + LATE / 2
    assert mem.due(late) == [record(mem)]  # woke at 10:10: still worth it
    mem2 = memory()
    working_days(mem2, range(0, 1))
    assert mem2.due(at(1, 9) - LEAD + LATE + 1) == []  # woke in the afternoon: tomorrow
    assert mem2.next_due(at(1, 14)) == at(2, 9) - LEAD


def test_every_pair_is_warmed_at_start_most_recently_asked_first() -> None:
    mem = memory()
    mem.asked(SUBJECT, OTHER, LABEL, at(0, 9))
    mem.asked(SUBJECT, TARGET, LABEL, at(0, 10))
    assert [r.target for r in mem.at_start(at(1, 8))] == [TARGET, OTHER]


# -- what is remembered, and the bounds --------------------------------------------------------


def test_requests_mark_the_memory_for_writing_once_a_day_not_every_time() -> None:
    mem = memory()
    assert mem.asked(SUBJECT, TARGET, LABEL, at(0, 9)) is True
    mem.saved()
    for n in range(1, 100):
        assert mem.asked(SUBJECT, TARGET, LABEL, at(0, 9) + n * 60) is False
    assert not mem.dirty
    assert record(mem).last_asked == at(0, 9) + 99 * 60
    assert mem.asked(SUBJECT, TARGET, LABEL, at(1, 9)) is True
    assert record(mem).first_asks == [at(0, 9), at(1, 9)]


def test_the_least_recently_asked_pairs_go_beyond_the_bound() -> None:
    mem = memory(max_records=3)
    subjects = [Subject("profile", "/home/alice", f"p{n}", "") for n in range(5)]
    for n, subject in enumerate(subjects):
        mem.asked(subject, TARGET, LABEL, at(0, 9) + n)
    mem.asked(subjects[2], TARGET, LABEL, at(0, 10))  # asked again: most recent
    assert [k[0].name for k in mem.records] == ["p3", "p4", "p2"]


def test_a_pair_not_asked_for_two_weeks_is_forgotten_and_old_days_drop_out() -> None:
    mem = memory()
    working_days(mem, range(0, 21))
    assert len(record(mem).first_asks) == 10  # two weeks of five working days
    assert all(t > at(20, 18) - prewarm.MAX_AGE for t in record(mem).first_asks)
    other = Subject("profile", "/home/alice", "old", "")
    mem.asked(other, TARGET, LABEL, at(0, 9))
    assert mem.at_start(at(14, 9)) == [record(mem)]
    assert mem.dirty


def test_forgetting_a_pair_is_worth_writing() -> None:
    mem = memory()
    mem.asked(SUBJECT, TARGET, LABEL, at(0, 9))
    mem.saved()
    mem.forget((SUBJECT, TARGET))
    assert mem.dirty and len(mem) == 0


# -- the state file's content --------------------------------------------------------------------


def test_env_trio_pairs_stay_in_memory_and_are_never_written(tmp_path: Path) -> None:
    secret = f"SENTINEL-SECRET-{secrets.token_hex(8)}"
    env = {"MENDA_CLIENT_ID": "ci-bot", "MENDA_CLIENT_SECRET": secret, "MENDA_HOST": "https://h"}
    identity = resolve_identity(env, tmp_path)
    subject = subject_of(identity, tmp_path)
    assert subject == Subject("env", str(tmp_path), "ci-bot", "https://h")
    mem = memory()
    assert mem.asked(subject, TARGET, identity.label, at(0, 9), held=(identity, tmp_path)) is False
    assert not mem.dirty
    mem.asked(SUBJECT, TARGET, LABEL, at(0, 9))
    data = mem.encode()
    assert secret.encode() not in data and b"ci-bot" not in data
    assert [r.subject for r in decode(data)] == [SUBJECT]
    assert mem.next_at(mem.records[(subject, TARGET)], at(0, 20)) == at(1, 9) - LEAD


def test_the_state_file_round_trips_labels_domains_and_times() -> None:
    mem = memory()
    working_days(mem, range(0, 3))
    data = mem.encode()
    body = json.loads(data)
    assert body["format"] == "menda-credd-prewarm" and body["version"] == 1
    assert set(body["pairs"][0]) == {
        "home",
        "profile",
        "label",
        "domain",
        "owner",
        "region",
        "last_asked",
        "first_asks",
    }
    again = memory()
    again.load(decode(data), at(2, 20))
    assert record(again).first_asks == record(mem).first_asks
    assert again.next_at(record(again), at(2, 20)) == at(3, 9) - LEAD
    # What was loaded is not asked again for the same day: no write for it.
    assert again.asked(SUBJECT, TARGET, LABEL, at(2, 19)) is False


def test_loading_drops_what_is_too_old_and_keeps_the_bound() -> None:
    mem = memory()
    for n in range(5):
        mem.asked(Subject("profile", "/home/a", f"p{n}", ""), TARGET, LABEL, at(n, 9))
    records = decode(mem.encode())
    again = memory(max_records=2)
    again.load(records, at(3, 12) + prewarm.MAX_AGE - DAY)  # p0..p2 too old by then
    assert [k[0].name for k in again.records] == ["p3", "p4"]


def test_times_from_the_future_are_not_trusted() -> None:
    mem = memory()
    mem.asked(SUBJECT, TARGET, LABEL, at(30, 9))
    mem.asked(SUBJECT, OTHER, LABEL, at(0, 9))
    again = memory()
    again.load(decode(mem.encode()), at(0, 12))  # the first pair "was asked" in 30 days
    assert [k[1] for k in again.records] == [OTHER]


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\xff\xfe", "not valid JSON"),
        (b"{not json", "not valid JSON"),
        (b"[]", "not a menda-credd pre-warm file"),
        (b'{"format": "something-else", "version": 1, "pairs": []}', "not a menda-credd"),
        (b'{"format": "menda-credd-prewarm", "version": 2, "pairs": []}', "format version 2"),
        (b'{"format": "menda-credd-prewarm", "version": 1, "pairs": {}}', "no list of pairs"),
        (b'{"format": "menda-credd-prewarm", "version": 1, "pairs": [1]}', "not an object"),
    ],
)
def test_a_foreign_or_corrupt_state_file_is_refused_with_a_reason(data: bytes, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        decode(data)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("home", "relative/home"),
        ("home", 7),
        ("profile", ""),
        ("domain", "x" * 2000),
        ("last_asked", "yesterday"),
        ("last_asked", True),
        ("first_asks", "today"),
        ("first_asks", [1.0] * 20),
        ("first_asks", [-5]),
        ("last_asked", 1e300),
    ],
)
def test_a_state_file_pair_of_the_wrong_shape_is_refused(field: str, value: object) -> None:
    mem = memory()
    mem.asked(SUBJECT, TARGET, LABEL, at(0, 9))
    body = json.loads(mem.encode())
    body["pairs"][0][field] = value
    with pytest.raises(ValueError, match=field):
        decode(json.dumps(body).encode())


def test_the_environment_variable_turns_prewarm_off() -> None:
    assert prewarm.enabled_by_env({})
    assert prewarm.enabled_by_env({"MENDA_CREDD_PREWARM": "on"})
    for value in ("off", "OFF", "0", "false", "no", " off "):
        assert not prewarm.enabled_by_env({"MENDA_CREDD_PREWARM": value})


# -- the pre-warmer with the broker, on a virtual clock -------------------------------------------


M2M_PROFILE = """\
[default]
host = http://127.0.0.1:9
auth_type = m2m
client_id = c
client_secret = s
"""


async def _sleep_until(clock: Callable[[], float], when: float) -> None:
    await anyio.sleep(max(when - clock(), 0.0))


def test_a_running_daemon_has_each_working_morning_warm(tmp_path: Path) -> None:
    """A week of 09:00-18:00 requests: after the first day, no first request of the day waits.

    The 8 h idle timeout drops the entry each night; pre-warm exchanges it again at 08:40.
    """
    write_profile(tmp_path, M2M_PROFILE)

    async def main(clock: Callable[[], float]) -> None:
        upstream = Upstream(clock, registry_lifetime=12 * 3600, access_lifetime=3600)
        monday = datetime.datetime.fromtimestamp(clock(), UTC).date()
        monday += datetime.timedelta(days=7 - monday.weekday())
        start = datetime.datetime.combine(monday, datetime.time(), UTC).timestamp()
        waited: list[bool] = []
        broker = Broker(upstream.send, clock=clock, policy=QUICK, rand=lambda: 0.5)
        async with broker:
            async with Prewarmer(broker, None, PrewarmMemory(tz=UTC)).running() as prewarmer:
                identity = await prewarmer.identities.resolve({}, tmp_path)
                for day in range(5):
                    for hour in range(9, 19):
                        await _sleep_until(clock, start + day * DAY + hour * HOUR)
                        before = broker.counters["waits"]
                        prewarmer.asked(identity, tmp_path, TARGET)
                        await broker.get(
                            identity, TARGET, tmp_path, Deadline(30.0, clock=anyio.current_time)
                        )
                        if hour == 9:
                            waited.append(broker.counters["waits"] > before)
                assert waited == [True, False, False, False, False]
                assert broker.counters["prewarms"] == 4
                assert broker.counters["entries_dropped"] == 4  # idle every night
                # A 12 h token, fetched at 08:40, is an entry's first: refreshed at
                # refresh.first_share (40 % with rand 0.5: 13:28), then at 80 % of that
                # token's life (23:04, still inside the idle timeout), and dropped at
                # 02:00; Friday's simulation ends before its 23:04.
                assert broker.counters["refreshes"] == 4 * 2 + 1
                assert upstream.calls["registry/token"] == 5 + 9

    run_virtual(main)


def test_a_prewarm_joins_the_flight_a_request_started(tmp_path: Path) -> None:
    write_profile(tmp_path, M2M_PROFILE)

    async def main(clock: Callable[[], float]) -> None:
        upstream = Upstream(clock)
        upstream.gate["registry/token"] = gate = anyio.Event()
        async with Broker(upstream.send, clock=clock, policy=QUICK) as broker:
            prewarmer = Prewarmer(broker, None, PrewarmMemory(tz=UTC))
            identity = await prewarmer.identities.resolve({}, tmp_path)
            prewarmer.asked(identity, tmp_path, TARGET)
            async with anyio.create_task_group() as tg:
                tg.start_soon(
                    broker.get, identity, TARGET, tmp_path, Deadline(30.0, clock=anyio.current_time)
                )
                while not broker.flights:
                    await anyio.sleep(0.01)
                assert await prewarmer.warm(record_of(prewarmer)) is False
                gate.set()
            assert upstream.calls["registry/token"] == 1
            assert broker.counters["prewarms"] == 0
            # With a token in memory there is nothing to do either.
            assert await prewarmer.warm(record_of(prewarmer)) is False
            assert upstream.calls["registry/token"] == 1

    run_virtual(main)


def record_of(prewarmer: Prewarmer) -> Record:
    (only,) = prewarmer.memory.records.values()
    return only


@pytest.mark.parametrize("change", ["profile removed", "login over", "forbidden"])
def test_a_pair_that_cannot_work_any_more_is_forgotten_quietly(tmp_path: Path, change: str) -> None:
    write_profile(tmp_path, M2M_PROFILE + "\n[user]\nhost = http://127.0.0.1:9\n")

    async def main(clock: Callable[[], float]) -> None:
        upstream = Upstream(clock)

        async def send(request: HttpRequest, timeout: float) -> HttpResponse:
            if change == "forbidden" and request.what == "registry/token":
                body = b'{"error": "forbidden", "message": "not for this domain"}'
                return HttpResponse(403, {"content-type": "application/json"}, body)
            return await upstream.send(request, timeout)

        async with Broker(send, clock=clock, policy=QUICK) as broker:
            prewarmer = Prewarmer(broker, None, PrewarmMemory(tz=UTC))
            profile = "user" if change == "login over" else "default"
            identity = await prewarmer.identities.resolve({"MENDA_PROFILE_ID": profile}, tmp_path)
            prewarmer.asked(identity, tmp_path, TARGET)
            if change == "profile removed":
                write_profile(tmp_path, "[other]\nhost = http://127.0.0.1:9\n")
            assert await prewarmer.warm(record_of(prewarmer)) is False
            assert len(prewarmer.memory) == 0
            assert broker.counters["prewarm_forgotten"] == 1
            assert not broker.entries

    run_virtual(main)


def test_a_pair_menda_cloud_could_not_serve_just_now_is_kept(tmp_path: Path) -> None:
    write_profile(tmp_path, M2M_PROFILE)

    async def main(clock: Callable[[], float]) -> None:
        upstream = Upstream(clock)
        upstream.fail["oauth2/token"] = 1  # one 503: a background try gives up at once
        async with Broker(upstream.send, clock=clock, policy=QUICK) as broker:
            prewarmer = Prewarmer(broker, None, PrewarmMemory(tz=UTC))
            identity = await prewarmer.identities.resolve({}, tmp_path)
            prewarmer.asked(identity, tmp_path, TARGET)
            assert await prewarmer.warm(record_of(prewarmer)) is False
            assert len(prewarmer.memory) == 1
            assert broker.counters["prewarm_failures"] == 1
            assert upstream.calls["oauth2/token"] == 1
            assert await prewarmer.warm(record_of(prewarmer)) is True
            assert broker.counters["prewarms"] == 1

    run_virtual(main)


def test_a_prewarmed_entry_nobody_asks_for_is_dropped_after_the_idle_timeout(
    tmp_path: Path,
) -> None:
    write_profile(tmp_path, M2M_PROFILE)

    async def main(clock: Callable[[], float]) -> None:
        upstream = Upstream(clock, registry_lifetime=3600, access_lifetime=7200)
        broker = Broker(upstream.send, clock=clock, policy=QUICK, idle_timeout=2 * 3600)
        async with broker:
            prewarmer = Prewarmer(broker, None, PrewarmMemory(tz=UTC))
            identity = await prewarmer.identities.resolve({}, tmp_path)
            prewarmer.asked(identity, tmp_path, TARGET)
            started = clock()
            assert await prewarmer.warm(record_of(prewarmer)) is True
            while broker.entries:
                await anyio.sleep(60)
            # Refreshed while within the idle timeout (1 h tokens), then dropped, and
            # never refreshed again.
            assert 2 * 3600 <= clock() - started <= 2 * 3600 + 61
            refreshed = broker.counters["refreshes"]
            assert refreshed >= 1
            await anyio.sleep(6 * 3600)
            assert broker.counters["refreshes"] == refreshed
            assert upstream.calls["registry/token"] == 1 + refreshed

    run_virtual(main)


def test_a_prewarmed_token_never_answers_another_identity(tmp_path: Path) -> None:
    write_profile(
        tmp_path, M2M_PROFILE + M2M_PROFILE.replace("[default]", "[b]").replace("= c", "= d")
    )

    async def main(clock: Callable[[], float]) -> None:
        upstream = Upstream(clock)
        async with Broker(upstream.send, clock=clock, policy=QUICK) as broker:
            prewarmer = Prewarmer(broker, None, PrewarmMemory(tz=UTC))
            a = await prewarmer.identities.resolve({}, tmp_path)
            b = await prewarmer.identities.resolve({"MENDA_PROFILE_ID": "b"}, tmp_path)
            assert a.client_id == "c" and b.client_id == "d"
            prewarmer.asked(a, tmp_path, TARGET)
            assert await prewarmer.warm(record_of(prewarmer)) is True
            assert broker.serve_cached(a, TARGET) is not None
            assert broker.serve_cached(b, TARGET) is None
            token_b = await broker.get(
                b, TARGET, tmp_path, Deadline(30.0, clock=anyio.current_time)
            )
            token_a = broker.serve_cached(a, TARGET)
            assert token_a is not None and token_a.token is not None
            assert token_b.token != token_a.token.token

    run_virtual(main)


def test_the_state_file_is_written_once_per_debounce_not_per_request(tmp_path: Path) -> None:
    path = tmp_path / "state" / "menda-credd" / "prewarm.json"
    write_profile(tmp_path, M2M_PROFILE)

    async def main(clock: Callable[[], float]) -> None:
        upstream = Upstream(clock)
        async with Broker(upstream.send, clock=clock, policy=QUICK) as broker:
            prewarmer = Prewarmer(broker, path, PrewarmMemory(tz=UTC), debounce=30.0)
            async with prewarmer.running():
                identity = await prewarmer.identities.resolve({}, tmp_path)
                domains = [RegistryTarget(f"d{n}", "058264169513", "eu-west-1") for n in range(10)]
                for target in domains:
                    prewarmer.asked(identity, tmp_path, target)
                    await anyio.sleep(1)
                assert not path.exists(), "not before the debounce has passed"
                await anyio.sleep(30)
                first = path.stat().st_ino
                assert len(json.loads(path.read_text())["pairs"]) == 10
                for _ in range(100):  # the same pairs, the same day: nothing to write
                    prewarmer.asked(identity, tmp_path, domains[0])
                await anyio.sleep(120)
                assert path.stat().st_ino == first
                prewarmer.asked(identity, tmp_path, OTHER)
            # At shutdown, without waiting for the debounce.
            assert path.stat().st_ino != first
            assert len(json.loads(path.read_text())["pairs"]) == 11
            assert stat.S_IMODE(path.stat().st_mode) == 0o600
            assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700

    run_virtual(main)


def test_status_text_says_whether_prewarm_is_on_and_which_entries_it_warmed() -> None:
    now = time.time()
    row = {"identity": LABEL, "domain": "menda-private", "domain_owner": "1", "region": "r"}
    row |= {"state": "valid", "requests": 0, "prewarmed_at": now - 90, "last_used": now}
    status = {"version": "1", "entries": [row], "prewarm": {"enabled": True, "remembered": 2}}
    status["prewarm"] |= {"state_file": "/s/prewarm.json", "next_at": now + 7200}
    text = format_status(status)
    assert "pre-warm:     on, 2 pairs remembered in /s/prewarm.json, next at " in text
    header, line = text.splitlines()[-2:]
    assert header.split()[-1] == "PRE-WARMED" and line.endswith("ago)")
    assert "pre-warm:     off" in format_status({**status, "prewarm": {"enabled": False}})
    older = {k: v for k, v in status.items() if k != "prewarm"}
    assert "pre-warm" not in format_status(older)


def test_a_request_that_joined_a_failing_prewarm_counts_as_a_failure(tmp_path: Path) -> None:
    write_profile(tmp_path, M2M_PROFILE)

    async def main(clock: Callable[[], float]) -> None:
        upstream = Upstream(clock)
        upstream.gate["oauth2/token"] = gate = anyio.Event()
        upstream.fail["oauth2/token"] = 100
        async with Broker(upstream.send, clock=clock, policy=QUICK) as broker:
            prewarmer = Prewarmer(broker, None, PrewarmMemory(tz=UTC))
            identity = await prewarmer.identities.resolve({}, tmp_path)
            prewarmer.asked(identity, tmp_path, TARGET)
            errors: list[Exception] = []

            async def request() -> None:
                try:
                    await broker.get(
                        identity, TARGET, tmp_path, Deadline(30.0, clock=anyio.current_time)
                    )
                except MendaError as exc:
                    errors.append(exc)

            async with anyio.create_task_group() as tg:
                tg.start_soon(prewarmer.warm, record_of(prewarmer))
                while not broker.flights:
                    await anyio.sleep(0.01)
                tg.start_soon(request)
                while broker.counters["waits"] == 0:
                    await anyio.sleep(0.01)
                gate.set()
            assert len(errors) == 1
            # The request lifted the pre-warm to every try of the normal policy.
            assert upstream.calls["oauth2/token"] == QUICK.max_attempts
            assert broker.counters["prewarm_failures"] == broker.counters["failures"] == 1
            assert len(prewarmer.memory) == 1  # menda-cloud in trouble: kept

    run_virtual(main)


def test_a_state_folder_open_to_others_is_neither_read_nor_written(tmp_path: Path) -> None:
    folder = tmp_path / "menda-credd"
    folder.mkdir(mode=0o700)
    path = folder / "prewarm.json"
    mem = memory()
    mem.asked(SUBJECT, TARGET, LABEL, at(0, 9))
    prewarm_file.save(path, mem.encode())
    assert len(prewarm_file.load(path)[0]) == 1
    folder.chmod(0o755)
    records, problem = prewarm_file.load(path)
    assert records == [] and problem is not None and "0755" in problem
    with pytest.raises(OSError, match="open to group or others"):
        prewarm_file.save(path, mem.encode())
