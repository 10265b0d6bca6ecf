"""menda-keyring end to end on the bundled fake menda-cloud, as a new user would see it.

Starts the fakes (menda-cloud, a CodeArtifact index behind a loopback HTTPS
proxy), writes a machine profile into a private demo home, then asks the real
``keyring`` CLI for the password of a CodeArtifact URL: in process first, then
through the menda-credd daemon. Tokens are shown only as a prefix and length.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
INDEX_URL = "https://aws@menda-private-058264169513.d.codeartifact.eu-west-1.amazonaws.com/pypi/menda-plugins/simple/"


def masked(token: str) -> str:
    return f"{token[:5]}... ({len(token)} characters)" if token else "(none)"


def step(title: str) -> None:
    print(f"\n== {title}")


def run(args: list[str], env: dict[str, str]) -> tuple[subprocess.CompletedProcess, float]:
    started = time.perf_counter()
    result = subprocess.run(args, env=env, capture_output=True, text=True, timeout=120)
    return result, time.perf_counter() - started


def counts(cloud_url: str) -> dict[str, int]:
    with urllib.request.urlopen(f"{cloud_url}/_fake/counts", timeout=10) as answer:  # noqa: S310
        data = json.load(answer)
    return {k: data.get(k, 0) for k in ("oauth", "registry")}


def keyring_get(env: dict[str, str], cloud_url: str, label: str, url: str = INDEX_URL) -> str:
    before = counts(cloud_url)
    result, elapsed = run([str(BIN / "keyring"), "get", url, "aws"], env)
    after = counts(cloud_url)
    token = result.stdout.strip()
    calls = {k: after[k] - before[k] for k in after}
    outcome = masked(token) if result.returncode == 0 else f"no answer (exit {result.returncode})"
    print(f"  {label:<44} {outcome:<34} {elapsed * 1000:6.0f} ms   menda-cloud calls: {calls}")
    if result.returncode not in (0, 1) or (result.returncode == 1 and result.stderr.strip()):
        print("  " + result.stderr.strip().replace("\n", "\n  "))
    return token


def main() -> int:
    workdir = Path(tempfile.mkdtemp(prefix="menda-demo-"))
    world = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.fakes.world",
            "--state-dir",
            str(workdir / "world"),
            "--exit-on-stdin-close",
        ],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        info = json.loads(world.stdout.readline())
        home = workdir / "home"
        (home / ".menda").mkdir(parents=True)
        (home / ".menda" / "mendacfg").write_text(
            "[demo]\n"
            f"host = {info['cloud_url']}\n"
            "auth_type = m2m\n"
            f"client_id = {info['client_id']}\n"
            f"client_secret = {info['client_secret']}\n"
        )
        env = {
            "HOME": str(home),
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
            "MENDA_PROFILE_ID": "demo",
            "MENDA_CREDD_SOCKET": str(workdir / "credd.sock"),
            "LANG": "C.UTF-8",
        }
        print(f"fake menda-cloud at {info['cloud_url']}; demo home {home}")
        print(f"profile [demo] in {home / '.menda' / 'mendacfg'}: auth_type = m2m")

        step("keyring sees the backend")
        listed, _ = run([str(BIN / "keyring"), "--list-backends"], env)
        print("  " + listed.stdout.strip().replace("\n", "\n  "))

        step("in process (MENDA_CREDD=off)")
        off = {**env, "MENDA_CREDD": "off"}
        keyring_get(off, info["cloud_url"], "cold: OAuth + registry exchange")
        token = keyring_get(off, info["cloud_url"], "again: Menda token reused from the cache")
        keyring_get(
            off,
            info["cloud_url"],
            "pypi.org is not ours: None, no calls",
            "https://pypi.org/simple/",
        )

        if shutil.which("menda-credd", path=str(BIN)):
            step("through the menda-credd daemon")
            started, _ = run([str(BIN / "menda-credd"), "start"], env)
            print("  " + (started.stdout or started.stderr).strip())
            if started.returncode == 0:
                token = keyring_get(env, info["cloud_url"], "first: daemon exchanges once")
                for _ in range(3):
                    token = keyring_get(env, info["cloud_url"], "warm: answered from memory")
                status, _ = run([str(BIN / "menda-credd"), "status"], env)
                print("  " + status.stdout.strip().replace("\n", "\n  "))
                stopped, _ = run([str(BIN / "menda-credd"), "stop"], env)
                print("  " + (stopped.stdout or stopped.stderr).strip())

        step("the fake CodeArtifact index accepts the token")
        proxy = urllib.request.ProxyHandler({"https": info["proxy_url"]})
        tls = urllib.request.HTTPSHandler(context=ssl.create_default_context(cafile=info["ca_pem"]))
        opener = urllib.request.build_opener(proxy, tls)
        plain_url = INDEX_URL.replace("aws@", "") + "menda-hello/"
        basic = base64.b64encode(f"aws:{token}".encode()).decode()
        request = urllib.request.Request(plain_url, headers={"Authorization": f"Basic {basic}"})  # noqa: S310
        with opener.open(request, timeout=10) as answer:
            page = answer.read().decode()
        print(
            f"  GET {plain_url} -> HTTP {answer.status}; lists menda-hello: "
            f"{'menda_hello-0.1.0' in page}"
        )
        return 0
    finally:
        world.terminate()
        world.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
