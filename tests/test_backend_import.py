"""What loading our keyring backend costs every ``keyring`` start, for every site.

keyring imports ``menda_keyring.backend`` through its entry point at each start-up, so
that module may only bring what deciding "is this URL ours" needs; the daemon client,
the resolver, ``json`` and friends load on the first CodeArtifact URL.
"""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import pytest

from menda_keyring.fileutil import HAS_FLOCK
from tests.fakes.menda_cloud import FakeMendaCloud
from tests.support.env import CA_URL, m2m_env
from tests.support.procs import run

pytestmark = pytest.mark.cli  # subprocesses resolving in process, no daemon

#: Ours that may load with the backend: the package, the backend and the URL rules.
ALLOWED_OURS = {"menda_keyring", "menda_keyring.backend", "menda_keyring.urls"}
#: Standard library modules that must not come with the backend unless keyring brought them.
WATCHED_STDLIB = {"socket", "json", "threading", "struct", "logging.handlers", "configparser"}
#: Never at start-up; truststore and filelock not even for a plain-http menda-cloud in process.
HEAVY = {"aiohttp", "anyio", "filelock", "truststore"}

PROBE = textwrap.dedent(
    """
    import json, os, sys
    before_keyring = set(sys.modules)
    import keyring.backend, keyring.credentials
    before = set(sys.modules)
    import menda_keyring.backend as backend
    after_import = set(sys.modules)
    service = sys.argv[1]
    backend.MendaCodeArtifactKeyring().get_credential("https://pypi.org/simple/", None)
    after_other_site = set(sys.modules)
    credential = backend.MendaCodeArtifactKeyring().get_credential(service, None)
    after_lookup = set(sys.modules)
    print(json.dumps({
        "keyring_brought": sorted(before - before_keyring),
        "before": sorted(before),
        "new_on_import": sorted(after_import - before),
        "new_on_other_site": sorted(after_other_site - after_import),
        "new_on_lookup": sorted(after_lookup - after_other_site),
        "password": credential.password if credential else None,
    }))
    """
)


def run_probe(env: dict[str, str]) -> dict:
    return json.loads(run([sys.executable, "-c", PROBE, CA_URL], env).check().stdout)


def test_importing_the_backend_brings_nothing_but_the_url_rules(
    cloud: FakeMendaCloud, home: Path
) -> None:
    found = run_probe(m2m_env(home, cloud, MENDA_CREDD="off"))
    new = set(found["new_on_import"])
    ours = {name for name in new if name.split(".")[0] in ("menda_keyring", "menda_credd", "menda")}
    assert ours <= ALLOWED_OURS, ours - ALLOWED_OURS
    before = set(found["before"])
    assert not (WATCHED_STDLIB - before) & new, (WATCHED_STDLIB - before) & new
    # Another site is answered None without loading anything more.
    assert found["new_on_other_site"] == []
    # The first CodeArtifact URL loads the rest and gets a token, in process here.
    assert cloud.is_valid_registry_token(found["password"])
    loaded = set(found["new_on_lookup"])
    assert {"menda_keyring.shim", "menda_keyring.in_process"} <= loaded
    assert not HEAVY & new, HEAVY & new
    # Without flock (Windows, or its emulation) the cache lock is filelock's.
    lookup_heavy = HEAVY if HAS_FLOCK else HEAVY - {"filelock"}
    assert not lookup_heavy & loaded, lookup_heavy & loaded


def test_the_daemon_client_loads_only_when_a_codeartifact_url_is_asked(
    cloud: FakeMendaCloud, home: Path
) -> None:
    found = run_probe(m2m_env(home, cloud))  # daemon on, none running: in process
    assert "menda_keyring.daemon_client" not in found["new_on_import"]
    assert "menda_keyring.daemon_client" in found["new_on_lookup"]
    assert cloud.is_valid_registry_token(found["password"])
