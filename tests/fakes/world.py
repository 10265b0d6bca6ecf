"""All the fakes together: menda-cloud, a CodeArtifact index and the HTTPS proxy.

In process::

    with FakeWorld() as world:
        env = {"HTTPS_PROXY": world.proxy_url, "SSL_CERT_FILE": str(world.ca_pem), ...}

As a process (demo, benchmarks, daemon tests)::

    python -m tests.fakes.world [--state-dir DIR] [--exit-on-stdin-close]

prints one JSON line (see :meth:`FakeWorld.info`) and serves until SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import sys
import threading
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from tests.fakes.codeartifact_index import FakeCodeArtifactIndex
from tests.fakes.https_proxy import DEFAULT_HOST, FakeHttpsProxy
from tests.fakes.menda_cloud import DEFAULT_DOMAIN, DEFAULT_OWNER, DEFAULT_REGION, FakeMendaCloud
from tests.fakes.wheels import build_wheel

DEFAULT_REPO = "menda-plugins"
SAMPLE_CLIENT_ID = "menda-sample-client"


class FakeWorld:
    """Starts a :class:`FakeMendaCloud`, a :class:`FakeCodeArtifactIndex` and a
    :class:`FakeHttpsProxy` wired together, with one registered machine client."""

    index_host = DEFAULT_HOST
    domain = DEFAULT_DOMAIN
    owner = DEFAULT_OWNER
    region = DEFAULT_REGION
    repo = DEFAULT_REPO

    def __init__(
        self,
        *,
        state_dir: str | Path | None = None,
        client_id: str = SAMPLE_CLIENT_ID,
        client_secret: str | None = None,
        machine_token_lifetime: int = 3600,
        registry_token_lifetime: int = 43200,
        cloud_port: int = 0,
        proxy_port: int = 0,
    ) -> None:
        self.state_dir = Path(state_dir) if state_dir is not None else None
        self.client_id = client_id
        self.client_secret = client_secret or "mcs_" + secrets.token_urlsafe(24)
        self.cloud = FakeMendaCloud(
            port=cloud_port,
            machine_token_lifetime=machine_token_lifetime,
            registry_token_lifetime=registry_token_lifetime,
        )
        self.cloud.add_client(self.client_id, self.client_secret)
        dist_dir = self.state_dir / "dist" if self.state_dir is not None else None
        if dist_dir is not None:
            build_wheel(dist_dir)
        self.index = FakeCodeArtifactIndex(self.cloud.is_valid_registry_token, dist_dir=dist_dir)
        self.proxy = FakeHttpsProxy(
            self.index.handler_class, (self.index_host,), ca_dir=self.state_dir, port=proxy_port
        )

    def start(self) -> FakeWorld:
        """Start all three servers; returns self."""
        self.cloud.start()
        self.index.start()
        self.proxy.start()
        return self

    def stop(self) -> None:
        """Stop everything and remove temp dirs."""
        self.proxy.close()
        self.index.close()
        self.cloud.stop()

    def __enter__(self) -> FakeWorld:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def cloud_url(self) -> str:
        """menda-cloud base URL (a profile's ``host`` / ``MENDA_HOST``)."""
        return self.cloud.url

    @property
    def proxy_url(self) -> str:
        """``HTTPS_PROXY`` value."""
        return self.proxy.url

    @property
    def ca_pem(self) -> Path:
        """CA bundle to trust (``SSL_CERT_FILE`` / ``pip --cert``)."""
        return self.proxy.ca_pem_path

    def index_url(self, repo: str = DEFAULT_REPO, token: str | None = None) -> str:
        """``https://aws[:token]@<codeartifact host>/pypi/<repo>/simple/``."""
        userinfo = f"aws:{token}" if token else "aws"
        return f"https://{userinfo}@{self.index_host}/pypi/{repo}/simple/"

    def registry_token(self) -> str:
        """Exchange the sample client's credentials for a CodeArtifact token (in process)."""
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        form = urllib.parse.urlencode(
            {
                "grant_type": "client_credentials",
                "client_id": self.client_id,
                "client_secret": self.client_secret,
            }
        ).encode()
        req = urllib.request.Request(f"{self.cloud_url}/oauth2/token", data=form)
        req.add_header("Content-Type", "application/x-www-form-urlencoded")
        with opener.open(req, timeout=10) as resp:
            access = json.loads(resp.read())["access_token"]
        body = {
            "registry": "codeartifact",
            "domain": self.domain,
            "domain_owner": self.owner,
            "region": self.region,
        }
        req = urllib.request.Request(
            f"{self.cloud_url}/api/v1/auth/registry/token", data=json.dumps(body).encode()
        )
        req.add_header("Content-Type", "application/json")
        req.add_header("Authorization", f"Bearer {access}")
        with opener.open(req, timeout=10) as resp:
            return str(json.loads(resp.read())["token"])

    def info(self) -> dict[str, Any]:
        """The facts other processes need (the CLI's JSON line)."""
        return {
            "cloud_url": self.cloud_url,
            "proxy_url": self.proxy_url,
            "ca_pem": str(self.ca_pem),
            "index_url": self.index_url(),
            "index_host": self.index_host,
            "direct_index_url": self.index.simple_url(),
            "domain": self.domain,
            "domain_owner": self.owner,
            "region": self.region,
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "pid": os.getpid(),
        }


def main(argv: list[str] | None = None) -> int:
    """CLI: start the world, print its JSON line, serve until a signal (or stdin EOF)."""
    parser = argparse.ArgumentParser(prog="python -m tests.fakes.world", description=__doc__)
    parser.add_argument("--state-dir", help="keep ca.pem, dist/ and world.json here")
    parser.add_argument("--exit-on-stdin-close", action="store_true")
    parser.add_argument("--cloud-port", type=int, default=0)
    parser.add_argument("--proxy-port", type=int, default=0)
    parser.add_argument("--client-id", default=SAMPLE_CLIENT_ID)
    parser.add_argument("--client-secret", default=None)
    parser.add_argument("--machine-token-lifetime", type=int, default=3600)
    parser.add_argument("--registry-token-lifetime", type=int, default=43200)
    args = parser.parse_args(argv)

    done = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        done.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    world = FakeWorld(
        state_dir=args.state_dir,
        client_id=args.client_id,
        client_secret=args.client_secret,
        machine_token_lifetime=args.machine_token_lifetime,
        registry_token_lifetime=args.registry_token_lifetime,
        cloud_port=args.cloud_port,
        proxy_port=args.proxy_port,
    )
    with world:
        line = json.dumps(world.info())
        if args.state_dir:
            (Path(args.state_dir) / "world.json").write_text(line + "\n")
        sys.stdout.write(line + "\n")
        sys.stdout.flush()
        if args.exit_on_stdin_close:

            def watch_stdin() -> None:
                with open(sys.stdin.fileno(), "rb", buffering=0, closefd=False) as stdin:
                    while stdin.read(4096):
                        pass
                done.set()

            threading.Thread(target=watch_stdin, name="stdin-watch", daemon=True).start()
        while not done.wait(1.0):
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
