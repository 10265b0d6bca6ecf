"""Hardening: another user gets nothing from the daemon, even when its socket and folder
are opened to everybody, because the daemon checks the peer's uid itself."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.fakes.menda_cloud import FakeMendaCloud
from tests.support.daemon import Daemon
from tests.support.env import CA_URL, CLIENT_ID, IS_ROOT, base_env, sentinel, write_profile

SYSTEM_PYTHON = "/usr/bin/python3"


def _nobody() -> pwd.struct_passwd | None:
    try:
        return pwd.getpwnam("nobody")
    except KeyError:
        return None


CLIENT = r"""
import json, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(20)
s.connect(sys.argv[1])
got = b""
try:
    s.sendall(sys.argv[2].encode() + b"\n")
    s.shutdown(socket.SHUT_WR)
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        got += chunk
except (BrokenPipeError, ConnectionResetError):
    pass
print(json.dumps({"uid": __import__("os").getuid(), "got": got.decode("utf-8", "replace")}))
"""


@pytest.mark.skipif(not IS_ROOT, reason="needs root to run a client as another user")
@pytest.mark.skipif(_nobody() is None, reason="no user 'nobody' on this machine")
@pytest.mark.skipif(not os.access(SYSTEM_PYTHON, os.X_OK), reason=f"needs {SYSTEM_PYTHON}")
def test_another_uid_is_refused_even_through_a_world_open_socket() -> None:
    nobody = _nobody()
    assert nobody is not None
    secret = sentinel()
    tmp = Path(tempfile.mkdtemp(prefix="mhp-", dir="/tmp"))
    try:
        with FakeMendaCloud() as cloud:
            cloud.add_client(CLIENT_ID, secret)
            # The victim's home: a machine profile the daemon could use if it obeyed.
            home = tmp / "home"
            home.mkdir(mode=0o700)
            write_profile(
                home,
                f"[default]\nhost = {cloud.url}\nauth_type = m2m\n"
                f"client_id = {CLIENT_ID}\nclient_secret = {secret}\n",
            )
            sock = tmp / "run" / "credd.sock"
            with Daemon(base_env(home), sock) as daemon:
                # Prove the request would work for the daemon's own user ...
                own = subprocess.run(
                    [SYSTEM_PYTHON, "-c", CLIENT, str(sock), _get_line(home)],
                    capture_output=True,
                    text=True,
                    timeout=60,
                    check=True,
                )
                reply = json.loads(json.loads(own.stdout)["got"].splitlines()[-1])
                assert reply["ok"] is True and reply["password"], reply
                before_cloud = cloud.counts()
                before = daemon.counters()["peer_rejections"]
                # ... then open everything up after the daemon has checked its folder.
                tmp.chmod(0o755)
                sock.parent.chmod(0o777)  # the point of the test
                sock.chmod(0o777)
                result = subprocess.run(
                    [SYSTEM_PYTHON, "-c", CLIENT, str(sock), _get_line(home)],
                    capture_output=True,
                    text=True,
                    timeout=60,
                    check=False,
                    user=nobody.pw_uid,
                    group=nobody.pw_gid,
                    extra_groups=[],
                    cwd="/",
                )
                assert result.returncode == 0, result.stderr
                answer = json.loads(result.stdout)
                assert answer["uid"] == nobody.pw_uid
                assert answer["got"] == "", f"another uid got an answer: {answer['got']!r}"
                assert daemon.counters()["peer_rejections"] == before + 1
                assert cloud.counts() == before_cloud, "nothing was fetched for the intruder"
                for issued in cloud.registry_tokens():
                    assert issued["token"] not in result.stdout + result.stderr
                sock.parent.chmod(0o700)  # our own client refuses a folder open to others
                assert daemon.answers(), "the daemon still serves its own user"
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _get_line(home: Path) -> str:
    return json.dumps(
        {"v": 1, "op": "get", "service": CA_URL, "username": "aws", "env": {"HOME": str(home)}}
    )
