"""The daemon's wire protocol, version 1: newline-delimited JSON over a Unix socket.

Request (one line, at most ``MAX_LINE`` bytes)::

    {"v": 1, "op": "get", "service": URL, "username": "aws" | null, "env": {...}}
    {"v": 1, "op": "ping"}   {"v": 1, "op": "status"}

``env`` carries what decides the identity in the caller: every ``MENDA_*``
variable and ``HOME``. Answers (one line each)::

    {"v": 1, "wait": true}                            # heartbeat while resolving
    {"v": 1, "ok": true, "username": "aws", "password": TOKEN, "expires_at": T}
    {"v": 1, "ok": true, "password": null}             # not a CodeArtifact service
    {"v": 1, "ok": false, "error": {"kind": K, "message": M, "status_code": S}}

A heartbeat comes at least every ``HEARTBEAT`` seconds, so a client can tell a
daemon at work from a wedged one without waiting for the whole ceiling.
"""

from __future__ import annotations

from collections.abc import Mapping

VERSION = 1
MAX_LINE = 64 * 1024
HEARTBEAT = 0.5
ENV_PREFIX = "MENDA_"
#: Variables that only steer the shim itself; they do not decide an identity.
SHIM_ONLY = frozenset({"MENDA_CREDD", "MENDA_CREDD_SOCKET"})


def identity_env(env: Mapping[str, str]) -> dict[str, str]:
    """The part of a caller's environment that decides which identity answers."""
    picked = {
        key: value
        for key, value in env.items()
        if key.startswith(ENV_PREFIX) and key not in SHIM_ONLY
    }
    if "HOME" in env:
        picked["HOME"] = env["HOME"]
    return picked
