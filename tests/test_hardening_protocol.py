"""Hardening: nothing a local client sends over the daemon's socket hurts the daemon.

One real daemon for the module (with a primed token), fuzzed with hypothesis and with
hand-made abuse: random bytes, invalid JSON, valid JSON of the wrong types, unknown
versions and ops, a 10 MB request, truncated and half-closed lines, a slow sender,
a sender that never reads, 500 idle connections. Afterwards the daemon is alive, its
RSS is bounded, and the real ``keyring get`` is answered by the daemon within 2 s.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from menda_keyring.daemon_protocol import MAX_LINE
from tests.fakes.menda_cloud import FakeMendaCloud
from tests.support.daemon import Daemon
from tests.support.env import CA_URL, CLIENT_ID, base_env, m2m_env, sentinel, short_tmpdir
from tests.support.procs import keyring_get
from tests.support.sockets import closed_by_peer, raw_exchange, reply_lines
from tests.support.waiting import wait_until

RSS_LIMIT_KB = 100 * 1024
READ_TIMEOUT = 10.0  # menda_credd.server.READ_TIMEOUT; generous slack is added below


class World:
    def __init__(self, cloud: FakeMendaCloud, daemon: Daemon, env: dict[str, str]) -> None:
        self.cloud = cloud
        self.daemon = daemon
        self.env = env
        self.token = ""

    def get_from_daemon(self) -> None:
        """A normal ``keyring get``, answered by the daemon from memory within 2 s."""
        before_cloud = self.cloud.counts()
        before = self.daemon.counters()
        result = keyring_get(self.env, timeout=30)
        assert result.ok, result.describe()
        assert result.elapsed < 2.0, f"keyring get took {result.elapsed:.2f} s"
        assert result.token == self.token
        after = self.daemon.counters()
        assert after["hits"] == before["hits"] + 1, (before, after)
        assert self.cloud.counts() == before_cloud, "the answer must come from the daemon"


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    secret = sentinel()
    with short_tmpdir() as tmp, FakeMendaCloud() as cloud:
        cloud.add_client(CLIENT_ID, secret)
        home = tmp / "home"
        home.mkdir()
        sock = tmp / "run" / "credd.sock"
        env = m2m_env(home, cloud, secret=secret, MENDA_CREDD_SOCKET=str(sock))
        with Daemon(base_env(tmp / "daemon-home"), sock) as daemon:
            w = World(cloud, daemon, env)
            primed = keyring_get(env)
            assert primed.ok, primed.describe() + daemon.log()
            w.token = primed.token
            assert daemon.counters()["exchanges_registry"] == 1
            yield w
            # After all the abuse, whichever tests ran and in whatever order.
            assert_healthy(w)
            assert daemon.rss_kb() < RSS_LIMIT_KB, f"RSS {daemon.rss_kb()} kB"
            w.get_from_daemon()


def check_replies(raw: bytes) -> list[dict[str, Any]]:
    """Whatever came back is well-formed protocol and never holds a token."""
    replies = reply_lines(raw)
    for reply in replies:
        assert reply.get("v") == 1, reply
        assert reply.get("wait") is True or isinstance(reply.get("ok"), bool), reply
        assert not reply.get("password"), f"a fuzzed request got a token: {reply}"
    return replies


def assert_healthy(w: World) -> None:
    assert w.daemon.alive(), w.daemon.log()
    assert w.daemon.answers()


# -- hypothesis ------------------------------------------------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=40)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)
requests = st.fixed_dictionaries(
    {},
    optional={
        "v": st.sampled_from([1, 0, 2, -1, "1", 1.0, True, None, [1]]) | json_values,
        "op": st.sampled_from(["get", "ping", "status", "set", "delete", "", "GET"]) | json_values,
        "service": st.sampled_from([CA_URL, "https://pypi.org/simple/", ""]) | json_values,
        "username": st.sampled_from(["aws", None, "alice"]) | json_values,
        "env": st.dictionaries(
            st.sampled_from(["HOME", "MENDA_PROFILE_ID", "MENDA_KEYRING_TIMEOUT", "MENDA_HOST"])
            | st.text(max_size=10),
            json_values,
            max_size=4,
        )
        | json_values,
    },
)
payloads = st.one_of(
    st.binary(max_size=2048),
    st.binary(max_size=512).map(lambda b: b + b"\n"),
    json_values.map(lambda v: json.dumps(v).encode() + b"\n"),
    requests.map(lambda r: json.dumps(r).encode() + b"\n"),
    # several requests on one connection, the last one maybe truncated
    st.lists(requests.map(lambda r: json.dumps(r).encode()), min_size=1, max_size=4).flatmap(
        lambda parts: st.integers(0, len(b"\n".join(parts))).map(
            lambda cut: (b"\n".join(parts) + b"\n")[: cut or None]
        )
    ),
)


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=payloads)
def test_fuzzed_requests_get_protocol_answers_or_a_closed_connection(
    world: World, data: bytes
) -> None:
    started = time.monotonic()
    raw = raw_exchange(world.daemon.socket, data, timeout=READ_TIMEOUT + 10)
    # Half-closed: the daemon answers what it got at EOF and closes, never waits the timeout.
    assert time.monotonic() - started < READ_TIMEOUT / 2
    check_replies(raw)


# -- hand-made abuse ---------------------------------------------------------------------------

WRONG_TYPES = [
    {"v": 1, "op": "get", "service": 42, "username": "aws", "env": {}},
    {"v": 1, "op": "get", "service": CA_URL, "username": {"a": 1}, "env": {}},
    {"v": 1, "op": "get", "service": CA_URL, "username": "aws", "env": ["HOME", "/"]},
    {"v": 1, "op": "get", "service": CA_URL, "username": "aws", "env": {"HOME": 7}},
    {"v": 1, "op": "get", "service": CA_URL, "username": "aws", "env": "HOME=/"},
    {"v": 1, "op": "get", "service": None},
    {"v": 1, "op": "get", "service": [CA_URL]},
    {"v": 2, "op": "ping"},
    {"v": "1", "op": "ping"},
    {"v": 1.0, "op": "ping"},
    {"v": True, "op": "ping"},
    {"op": "ping"},
    {"v": 1, "op": "shutdown"},
    {"v": 1, "op": ["get"]},
    {"v": 1},
    [1, "get"],
    "ping",
    None,
]


@pytest.mark.parametrize("message", WRONG_TYPES, ids=lambda m: json.dumps(m)[:60])
def test_wrong_types_get_bad_request_and_the_connection_keeps_serving(
    world: World, message: Any
) -> None:
    ping = b'{"v":1,"op":"ping"}\n'
    raw = raw_exchange(world.daemon.socket, json.dumps(message).encode() + b"\n" + ping)
    replies = check_replies(raw)
    assert len(replies) == 2, replies
    bad, pong = replies
    newer = isinstance(message, dict) and type(message.get("v")) is int and message["v"] != 1
    wanted = "unsupported_version" if newer else "bad_request"
    assert bad["ok"] is False and bad["error"]["kind"] == wanted, bad
    assert pong["ok"] is True and pong["pid"] == world.daemon.pid


@pytest.mark.parametrize(
    "data",
    [
        b"\xff\xfe\x00garbage\n",
        b"{not json}\n",
        b'{"v":1,"op":"ping"',  # truncated, then half-closed
        b'{"v":1,"op":"pi',
        b"[" * 60000 + b"\n",  # deep nesting inside MAX_LINE: RecursionError in json
        b"1" * 5000 + b"\n",  # int past Python's digit limit
        b'{"v":1,"op":"get","service":"' + b"a" * 60000 + b'"}\n',
        b"\n\n\n",
        b"\r\n",
    ],
    ids=lambda d: repr(d[:24]),
)
def test_invalid_and_truncated_input_is_answered_or_closed_quickly(
    world: World, data: bytes
) -> None:
    started = time.monotonic()
    raw = raw_exchange(world.daemon.socket, data)
    assert time.monotonic() - started < READ_TIMEOUT / 2
    for reply in check_replies(raw):
        # an error, a pong, or "not a CodeArtifact service"
        assert (
            reply["ok"] is False
            or reply.get("pid") == world.daemon.pid
            or ("password" in reply and reply["password"] is None)
        ), reply
    assert_healthy(world)


def test_a_10mb_request_is_refused_without_growing_the_daemon(world: World) -> None:
    before = world.daemon.rss_kb()
    for data in (b"x" * (10 * 1024 * 1024), b'{"v":1,"op":"get","service":"' + b"a" * (10 << 20)):
        raw = raw_exchange(world.daemon.socket, data, timeout=30)
        replies = check_replies(raw)
        assert len(replies) <= 1
        if replies:
            assert replies[0]["error"]["kind"] == "bad_request"
            assert str(MAX_LINE) in replies[0]["error"]["message"]
    assert_healthy(world)
    assert world.daemon.rss_kb() - before < 50 * 1024


def test_a_slow_sender_one_byte_at_a_time_is_served(world: World) -> None:
    line = b'{"v":1,"op":"ping"}\n'
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(20)
        sock.connect(world.daemon.socket)
        for i in range(len(line)):
            sock.sendall(line[i : i + 1])
            time.sleep(0.01)  # pacing the sender, not synchronising
            if i == len(line) // 2:
                # Meanwhile the daemon serves everybody else.
                world.get_from_daemon()
        reply = json.loads(sock.makefile("rb").readline())
    assert reply["ok"] is True and reply["pid"] == world.daemon.pid


def _fill_without_reading(sock: socket.socket) -> int:
    """Pipeline requests until the daemon stops reading from us; returns bytes sent."""
    sock.setblocking(False)
    chunk = b'{"v":1,"op":"status"}\n' * 2000
    sent = 0
    stalled_since = None
    while True:
        try:
            sent += sock.send(chunk)
            stalled_since = None
        except BlockingIOError:
            stalled_since = stalled_since or time.monotonic()
            if time.monotonic() - stalled_since > 1.0:
                return sent
            time.sleep(0.01)


def _connect(path: str) -> socket.socket:
    """Connect, retrying while the listen backlog is full (EAGAIN on a Unix socket)."""
    end = time.monotonic() + 20
    while True:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(path)
            return s
        except BlockingIOError:
            s.close()
            if time.monotonic() > end:
                raise
            time.sleep(0.01)


def _closed_count(socks: list[socket.socket]) -> int:
    for s in socks:
        s.setblocking(False)
    return sum(1 for s in socks if closed_by_peer(s))


def test_500_idle_connections_are_capped_then_timed_out(world: World) -> None:
    """500 idle clients and a slowloris: over the cap closed at once, the rest timed out."""
    path = world.daemon.socket
    loris = _connect(path)
    stop_loris = threading.Event()

    def dribble() -> None:
        # One byte of a never-ending line every half second.
        while not stop_loris.is_set():
            try:
                loris.send(b"{")
            except OSError:
                return
            stop_loris.wait(0.5)

    threading.Thread(target=dribble, daemon=True).start()
    idle: list[socket.socket] = []
    try:
        idle.extend(_connect(path) for _ in range(500))
        started = time.monotonic()
        # Over the cap (256), connections are closed at once.
        wait_until(
            lambda: _closed_count(idle) >= 500 - 256,
            timeout=10,
            what="connections over the cap to be closed",
        )
        assert time.monotonic() - started < READ_TIMEOUT / 2
        assert world.daemon.alive()
        # Every idle connection and the slowloris are dropped by the read timeout.
        pending = [*idle, loris]

        def all_closed() -> bool:
            pending[:] = [s for s in pending if not closed_by_peer(s)]
            return not pending

        wait_until(
            all_closed,
            timeout=READ_TIMEOUT + 20,
            interval=0.1,
            what="the daemon to close every idle connection",
        )
    finally:
        stop_loris.set()
        for s in [*idle, loris]:
            s.close()
    assert_healthy(world)
    assert world.daemon.counters()["connections_refused"] >= 500 - 256
    world.get_from_daemon()


def test_while_idle_connections_fill_the_cap_keyring_is_still_answered_by_the_daemon(
    world: World,
) -> None:
    path = world.daemon.socket
    idle: list[socket.socket] = []
    try:
        idle.extend(_connect(path) for _ in range(300))
        wait_until(lambda: _closed_count(idle) >= 300 - 256, timeout=10, what="the cap")
        before_cloud = world.cloud.counts()
        result = keyring_get(world.env, timeout=30)
        assert result.ok, result.describe()
        assert result.elapsed < 5.0
        assert world.cloud.counts() == before_cloud, (
            "with the cap full of idle connections, keyring fell back to in-process resolution"
        )
    finally:
        for s in idle:
            s.close()
    wait_until(world.daemon.answers, what="the daemon to answer again")


def test_a_client_that_never_reads_its_answers_is_dropped(world: World) -> None:
    """A client that pipelines requests and never reads must not hold a slot forever."""
    baseline = world.daemon.status()["open_connections"]
    hog = _connect(world.daemon.socket)
    try:
        assert _fill_without_reading(hog) > 0  # the daemon is now blocked writing to us
        assert world.daemon.status()["open_connections"] == baseline + 1
        assert world.daemon.answers(), "one stuck client must not stop the others"
        # Watch from the daemon's side: reading here would unblock it.
        wait_until(
            lambda: world.daemon.status()["open_connections"] == baseline,
            timeout=READ_TIMEOUT + 2,
            interval=0.2,
            what="the daemon to drop a client that never reads its answers",
        )
    finally:
        hog.close()
    assert_healthy(world)


def test_after_a_bad_request_the_daemon_counts_it_and_still_answers_keyring(
    world: World,
) -> None:
    before = world.daemon.cli_status_json()["counters"]["bad_requests"]
    replies = check_replies(raw_exchange(world.daemon.socket, b"{not json}\n"))
    assert [r["ok"] for r in replies] == [False], replies
    assert_healthy(world)
    world.get_from_daemon()
    status = world.daemon.cli_status_json()
    assert status["running"] is True
    assert status["counters"]["bad_requests"] == before + 1
