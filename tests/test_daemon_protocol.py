"""The daemon's wire codec on its own: every message both ways, framing, versions, errors."""

from __future__ import annotations

import json
import sys

import pytest

from menda_keyring import daemon_protocol as wire
from menda_keyring import errors
from menda_keyring.daemon_protocol import (
    MAX_LINE,
    VERSION,
    ErrorReply,
    GetRequest,
    Heartbeat,
    LineTooLong,
    NotOurs,
    PingReply,
    PingRequest,
    ProtocolMismatch,
    StatusReply,
    StatusRequest,
    TokenReply,
    decode_reply,
    decode_request,
    encode_reply,
    encode_request,
    error_from_wire,
    error_to_wire,
    get_request,
    take_line,
)
from tests.support.procs import run

ENV = {"MENDA_CLIENT_ID": "c", "MENDA_CLIENT_SECRET": "s", "HOME": "/home/u"}


@pytest.mark.parametrize(
    "request_",
    [
        GetRequest("https://x/", "aws", ENV),
        GetRequest("", None, {}),
        PingRequest(),
        StatusRequest(),
    ],
    ids=repr,
)
def test_every_request_survives_encode_then_decode(request_: wire.Request) -> None:
    line = encode_request(request_)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert json.loads(line)["v"] == VERSION
    assert decode_request(line[:-1]) == request_


@pytest.mark.parametrize(
    ("reply", "op"),
    [
        (Heartbeat(), "get"),
        (TokenReply("aws", "caat_x", 1234.5), "get"),
        (TokenReply("aws", "caat_x", None), "get"),
        (NotOurs(), "get"),
        (PingReply(42, "9.9.9", VERSION), "ping"),
        (StatusReply({"pid": 1, "entries": []}), "status"),
    ],
    ids=repr,
)
def test_every_reply_survives_encode_then_decode(reply: wire.Reply, op: str) -> None:
    line = encode_reply(reply)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert decode_reply(line[:-1], op) == reply


def test_the_shim_only_sends_what_decides_the_identity() -> None:
    env = {**ENV, "PATH": "/bin", "MENDA_CREDD": "on", "MENDA_CREDD_SOCKET": "/s", "AWS_X": "y"}
    assert get_request("svc", "aws", env).env == ENV


def test_every_registered_error_kind_travels_as_its_own_class() -> None:
    kinds = errors.known_kinds()
    assert len(kinds) >= 16
    for kind, cls in kinds.items():
        assert cls.kind == kind
        error = cls("message for " + kind)
        if isinstance(error, errors.MendaCloudAPIError):
            error = cls("message for " + kind, 503)
        line = encode_reply(ErrorReply(error))
        back = decode_reply(line, "get")
        assert isinstance(back, ErrorReply)
        assert type(back.error) is cls
        assert back.error.message == "message for " + kind
        assert getattr(back.error, "status_code", None) == getattr(error, "status_code", None)


def test_an_unknown_kind_arrives_as_a_plain_menda_error_with_its_message() -> None:
    error = error_from_wire({"kind": "from_a_newer_release", "message": "m", "status_code": 500})
    assert type(error) is errors.MendaError and error.message == "m"
    assert type(error_from_wire({})) is errors.MendaError
    assert type(error_from_wire({"kind": ["x"]})) is errors.MendaError


def test_a_kind_is_known_from_the_definition_of_its_class_on() -> None:
    class ShinyNewError(errors.MendaError):
        kind = "test_shiny_new_error_kind"

    assert errors.error_class("test_shiny_new_error_kind") is ShinyNewError
    assert type(error_from_wire(error_to_wire(ShinyNewError("x")))) is ShinyNewError


def test_two_classes_cannot_claim_one_kind() -> None:
    with pytest.raises(TypeError, match="already ProfileNotFoundError"):

        class Impostor(errors.MendaError):
            kind = "profile_not_found"

    assert errors.error_class("profile_not_found") is errors.ProfileNotFoundError


def test_the_decoder_knows_every_kind_without_importing_the_modules_that_raise_them() -> None:
    code = (
        "import sys\n"
        "from menda_keyring.daemon_protocol import error_from_wire\n"
        "e = error_from_wire({'kind': 'menda_cloud_transient', 'message': 'm', 'status_code': 503})\n"
        "r = error_from_wire({'kind': 'menda_access_token_rejected', 'message': 'm'})\n"
        "print(type(e).__name__, e.status_code, type(r).__name__,\n"
        "      'menda_keyring.cloud_protocol' in sys.modules)\n"
    )
    env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
    out = run([sys.executable, "-c", code], env).check().stdout.split()
    assert out == ["TransientError", "503", "AccessTokenRejected", "False"]


def test_the_moved_classes_are_still_importable_from_cloud_protocol() -> None:
    from menda_keyring import cloud_protocol

    assert cloud_protocol.TransientError is errors.TransientError
    assert cloud_protocol.AccessTokenRejected is errors.AccessTokenRejected


@pytest.mark.parametrize(
    ("line", "cls", "needle"),
    [
        (b"not json", errors.BadRequestError, "not JSON"),
        (b"[" * 100_000, errors.BadRequestError, "not JSON"),
        (b"[1]", errors.BadRequestError, "JSON object"),
        (b'{"op": "ping"}', errors.BadRequestError, "protocol version"),
        (b'{"v": true, "op": "ping"}', errors.BadRequestError, "protocol version"),
        (b'{"v": 2, "op": "ping"}', errors.UnsupportedVersionError, "v2"),
        (b'{"v": 0, "op": "ping"}', errors.UnsupportedVersionError, "v0"),
        (b'{"v": 1, "op": "nope"}', errors.BadRequestError, "unknown op"),
        (b'{"v": 1, "op": "get", "service": 1}', errors.BadRequestError, "service"),
        (b'{"v": 1, "op": "get", "service": "s", "env": {"A": 1}}', errors.BadRequestError, "env"),
    ],
)
def test_unreadable_requests_raise_the_wire_errors(
    line: bytes, cls: type[errors.MendaError], needle: str
) -> None:
    with pytest.raises(cls, match=needle) as caught:
        decode_request(line)
    assert isinstance(caught.value, errors.DaemonProtocolError)


def test_fields_a_side_does_not_know_are_ignored_both_ways() -> None:
    request = decode_request(b'{"v":1,"op":"get","service":"s","username":null,"later":{"x":1}}')
    assert request == GetRequest("s", None, {})
    reply = decode_reply(
        b'{"v":1,"ok":true,"pid":7,"version":"2.0","protocol":1,"extra":1}', "ping"
    )
    assert reply == PingReply(7, "2.0", 1)


def test_a_reply_in_another_version_is_not_read_but_names_its_versions() -> None:
    line = b'{"v": 2, "ok": true, "pid": 5, "version": "2.0.0", "password": "x"}'
    with pytest.raises(ProtocolMismatch) as caught:
        decode_reply(line, "get")
    assert (caught.value.peer_version, caught.value.peer_package) == (2, "2.0.0")
    assert "v2" in caught.value.reason and "x" not in caught.value.reason.split()
    with pytest.raises(ProtocolMismatch) as caught:
        decode_reply(b'{"ok": true}', "get")
    assert caught.value.peer_version is None


@pytest.mark.parametrize(
    ("line", "op"),
    [
        (b"", "get"),
        (b"[]", "get"),
        (b'{"v":1,"ok":true}', "get"),
        (b'{"v":1,"ok":true,"password":""}', "get"),
        (b'{"v":1,"ok":true,"password":5}', "get"),
        (b'{"v":1,"ok":true,"pid":"5"}', "ping"),
        (b'{"v":1,"ok":true,"pid":0}', "ping"),
        (b'{"v":1,"ok":true,"status":[]}', "status"),
        (b'{"v":1,"wait":true}', "ping"),
    ],
)
def test_replies_that_do_not_answer_the_question_are_a_mismatch(line: bytes, op: str) -> None:
    with pytest.raises(ProtocolMismatch):
        decode_reply(line, op)


def test_a_ping_reply_of_an_older_release_without_protocol_field_means_ours() -> None:
    assert decode_reply(b'{"v":1,"ok":true,"pid":3,"version":"0.1.0"}', "ping") == PingReply(
        3, "0.1.0", VERSION
    )


def test_lines_are_taken_one_at_a_time_and_bounded() -> None:
    assert take_line(b"", 10) == (None, b"")
    assert take_line(b"abc", 10) == (None, b"abc")
    assert take_line(b"a\nb\nc", 10) == (b"a", b"b\nc")
    assert take_line(b"\n", 10) == (b"", b"")
    assert take_line(b"x" * 10 + b"\n", 10) == (b"x" * 10, b"")
    with pytest.raises(LineTooLong):
        take_line(b"x" * 11 + b"\n", 10)
    with pytest.raises(LineTooLong):
        take_line(b"x" * 11, 10)
    assert MAX_LINE < wire.MAX_REPLY


def test_hot_lines_are_precomputed_and_equal_to_their_encoding() -> None:
    assert wire.frame({"v": VERSION, "wait": True}) == wire.HEARTBEAT_LINE
    assert wire.frame({"v": VERSION, "ok": True, "password": None}) == wire.NOT_OURS_LINE
    assert encode_reply(Heartbeat()) is wire.HEARTBEAT_LINE
    assert encode_reply(NotOurs()) is wire.NOT_OURS_LINE


def test_a_token_never_shows_in_the_repr_of_a_reply() -> None:
    assert "caat_secret" not in repr(TokenReply("aws", "caat_secret", None))
    assert "s3cr3t" not in repr(GetRequest("svc", "aws", {"MENDA_CLIENT_SECRET": "s3cr3t"}))
