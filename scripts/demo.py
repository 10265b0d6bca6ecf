"""menda-keyring end to end on the bundled fake menda-cloud, as a new user would see it.

Starts the fakes (menda-cloud, a CodeArtifact index behind a loopback HTTPS
proxy), writes a machine profile into a private demo home, then asks the real
``keyring`` CLI for the password of a CodeArtifact URL: in process first, then
through the menda-credd daemon. Tokens are shown only as a prefix and length.

Run it from the repository root as a module (``./scripts/demo`` does):
``.venv/bin/python -m scripts.demo``.
"""

from __future__ import annotations

import base64
import os
import ssl
import sys
import tempfile
import urllib.request
from pathlib import Path

from tests.fakes.menda_cloud import FakeMendaCloud
from tests.fakes.world import FakeWorld
from tests.support.env import BIN, CA_URL, KEYRING, write_profile
from tests.support.procs import Run, credd, run

INDEX_URL = CA_URL


def masked(token: str) -> str:
    return f"{token[:5]}... ({len(token)} characters)" if token else "(none)"


def step(title: str) -> None:
    print(f"\n== {title}")


def counts(cloud: FakeMendaCloud) -> dict[str, int]:
    data = cloud.counts()
    return {k: data.get(k, 0) for k in ("oauth", "registry")}


def keyring_get(
    env: dict[str, str], cloud: FakeMendaCloud, label: str, url: str = INDEX_URL
) -> str:
    before = counts(cloud)
    result = run([KEYRING, "get", url, "aws"], env, timeout=120)
    after = counts(cloud)
    token = result.stdout.strip()
    calls = {k: after[k] - before[k] for k in after}
    outcome = masked(token) if result.returncode == 0 else f"no answer (exit {result.returncode})"
    print(
        f"  {label:<44} {outcome:<34} {result.elapsed * 1000:6.0f} ms   menda-cloud calls: {calls}"
    )
    if result.returncode not in (0, 1) or (result.returncode == 1 and result.stderr.strip()):
        print("  " + result.stderr.strip().replace("\n", "\n  "))
    return token


def said(result: Run) -> str:
    return "  " + (result.stdout or result.stderr).strip().replace("\n", "\n  ")


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="menda-demo-") as tmp:
        workdir = Path(tmp)
        with FakeWorld(state_dir=workdir / "world") as world:
            return demo(world, workdir)


def demo(world: FakeWorld, workdir: Path) -> int:
    cloud = world.cloud
    home = workdir / "home"
    home.mkdir()
    profile = write_profile(
        home,
        "[demo]\n"
        f"host = {world.cloud_url}\n"
        "auth_type = m2m\n"
        f"client_id = {world.client_id}\n"
        f"client_secret = {world.client_secret}\n",
    )
    env = {
        "HOME": str(home),
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
        "MENDA_PROFILE_ID": "demo",
        "MENDA_CREDD_SOCKET": str(workdir / "credd.sock"),
        "LANG": "C.UTF-8",
    }
    print(f"fake menda-cloud at {world.cloud_url}; demo home {home}")
    print(f"profile [demo] in {profile}: auth_type = m2m")

    step("keyring sees the backend")
    listed = run([KEYRING, "--list-backends"], env)
    print("  " + listed.stdout.strip().replace("\n", "\n  "))

    step("in process (MENDA_CREDD=off)")
    off = {**env, "MENDA_CREDD": "off"}
    keyring_get(off, cloud, "cold: OAuth + registry exchange")
    token = keyring_get(off, cloud, "again: Menda token reused from the cache")
    keyring_get(off, cloud, "pypi.org is not ours: None, no calls", "https://pypi.org/simple/")

    step("through the menda-credd daemon, as a user starts it")
    started = credd("start", env=env)
    print(said(started))
    if started.returncode == 0:
        token = keyring_get(env, cloud, "first: daemon exchanges once")
        for _ in range(3):
            token = keyring_get(env, cloud, "warm: answered from memory")
        print(said(credd("status", env=env)))
        print(said(credd("stop", env=env)))

    step("the fake CodeArtifact index accepts the token")
    proxy = urllib.request.ProxyHandler({"https": world.proxy_url})
    tls = urllib.request.HTTPSHandler(context=ssl.create_default_context(cafile=world.ca_pem))
    opener = urllib.request.build_opener(proxy, tls)
    plain_url = INDEX_URL.replace("aws@", "") + "menda-hello/"
    basic = base64.b64encode(f"aws:{token}".encode()).decode()
    request = urllib.request.Request(plain_url, headers={"Authorization": f"Basic {basic}"})  # noqa: S310 - https only
    with opener.open(request, timeout=10) as answer:
        page = answer.read().decode()
    print(
        f"  GET {plain_url} -> HTTP {answer.status}; lists menda-hello: "
        f"{'menda_hello-0.1.0' in page}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
