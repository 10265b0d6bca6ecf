"""``menda.error.exceptions``: the documented home of our typed errors, as users import it.

The classes there are the very ones the code raises (caught through that path), ``menda``
and ``menda.error`` are PEP 420 namespaces another Menda package can share, and the
same holds for a built wheel installed into a fresh virtual environment.
"""

from __future__ import annotations

import os
import shutil
import sys
import textwrap
from pathlib import Path

import pytest

import menda.error.exceptions as exceptions
from menda_keyring import errors
from menda_keyring.backend import MendaCodeArtifactKeyring
from tests.fakes.menda_cloud import FakeMendaCloud
from tests.support.env import BIN, CA_URL, CLIENT_ID, write_profile
from tests.support.procs import run

pytestmark = pytest.mark.cli  # subprocesses, a wheel build and a fresh venv; no daemon

ROOT = Path(__file__).resolve().parent.parent

# Run from an unrelated folder so the source tree on the current directory cannot help.
NAMESPACE_PROBE = textwrap.dedent(
    """
    import json, sys
    import menda, menda.error, menda.error.exceptions as exceptions
    import menda_keyring.errors as errors
    same = all(
        getattr(exceptions, name) is cls
        for name, cls in vars(errors).items()
        if isinstance(cls, type) and issubclass(cls, errors.MendaError)
    )
    try:
        import menda.other.extra as extra
        shared = extra.VALUE
    except ImportError:
        shared = None
    print(json.dumps({
        "menda_file": getattr(menda, "__file__", None),
        "error_file": getattr(menda.error, "__file__", None),
        "menda_path": [str(p) for p in menda.__path__],
        "module": exceptions.__file__,
        "same": same,
        "shared": shared,
        "names": sorted(exceptions.__all__),
    }))
    """
)


def probe(python: str, tmp_path: Path, extra_path: Path | None = None) -> dict:
    import json

    env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1"}
    if extra_path is not None:
        env["PYTHONPATH"] = str(extra_path)
    return json.loads(run([python, "-c", NAMESPACE_PROBE], env, cwd=tmp_path).check().stdout)


def other_menda_package(tmp_path: Path) -> Path:
    """Another Menda package's files under the same ``menda`` namespace, elsewhere on the path."""
    site = tmp_path / "other-site"
    (site / "menda" / "other").mkdir(parents=True)
    (site / "menda" / "other" / "extra.py").write_text("VALUE = 'from another package'\n")
    return site


def check_namespace(found: dict) -> None:
    assert found["menda_file"] is None and found["error_file"] is None  # namespaces
    assert found["same"] is True
    assert found["shared"] == "from another package"
    assert {"MendaCloudAPIError", "NoCachedLoginError", "ProfileNotFoundError"} <= set(
        found["names"]
    )


def test_no_init_of_ours_at_either_level() -> None:
    assert not (ROOT / "menda" / "__init__.py").exists()
    assert not (ROOT / "menda" / "error" / "__init__.py").exists()
    assert (ROOT / "menda" / "error" / "exceptions.py").is_file()


def test_every_error_class_is_exported_under_the_namespace() -> None:
    ours = {
        name
        for name, cls in vars(errors).items()
        if isinstance(cls, type) and issubclass(cls, errors.MendaError)
    }
    assert set(exceptions.__all__) == ours
    for name in ours:
        assert getattr(exceptions, name) is getattr(errors, name)


def test_the_editable_install_serves_the_namespace_and_shares_it(tmp_path: Path) -> None:
    found = probe(sys.executable, tmp_path, other_menda_package(tmp_path))
    check_namespace(found)
    assert Path(found["module"]).resolve() == ROOT / "menda" / "error" / "exceptions.py"


def _copy_source(into: Path) -> Path:
    """The project's packaging inputs in a scratch folder: building writes no file here."""
    tree = into / "src"
    tree.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("menda", "menda_keyring", "menda_credd"):
        shutil.copytree(ROOT / name, tree / name, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, tree / name)
    return tree


@pytest.mark.timeout(600)
def test_a_built_wheel_in_a_fresh_venv_serves_the_namespace(tmp_path: Path) -> None:
    tree = _copy_source(tmp_path)
    dist = tmp_path / "dist"
    outside = dict(os.environ)  # the package index settings pip and uv are given here
    pip_wheel = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", dist, tree]
    run(pip_wheel, outside, timeout=300).check()
    (wheel,) = dist.glob("menda_keyring-*.whl")
    import zipfile

    names = zipfile.ZipFile(wheel).namelist()
    assert "menda/error/exceptions.py" in names
    assert not [n for n in names if n.startswith("menda/") and n.endswith("__init__.py")]
    venv = tmp_path / "venv"
    uv = str(BIN / "uv")
    run([uv, "venv", "--quiet", "--python", sys.executable, venv], outside, timeout=120).check()
    python = str(venv / "bin" / "python")
    install = [uv, "pip", "install", "--quiet", "--offline", "--no-deps", "--python", python, wheel]
    run(install, outside, timeout=120).check()
    found = probe(python, tmp_path, other_menda_package(tmp_path))
    check_namespace(found)
    assert found["module"].startswith(str(venv))


# -- each documented error, raised by the real code, caught through the namespace ------------


@pytest.fixture
def in_process(monkeypatch: pytest.MonkeyPatch, home: Path) -> MendaCodeArtifactKeyring:
    for name in list(os.environ):
        if name.startswith("MENDA_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("MENDA_CREDD", "off")
    monkeypatch.delitem(sys.modules, "keyring.cli", raising=False)  # a library caller
    return MendaCodeArtifactKeyring()


def test_profile_not_found_is_caught_there(
    in_process: MendaCodeArtifactKeyring, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_profile(home, "[default]\nhost = https://api.example.menda.cloud\n")
    monkeypatch.setenv("MENDA_PROFILE_ID", "nope")
    with pytest.raises(exceptions.ProfileNotFoundError, match=r"No profile \[nope\]"):
        in_process.get_credential(CA_URL, None)


def test_no_cached_login_is_caught_there(
    in_process: MendaCodeArtifactKeyring, home: Path, cloud: FakeMendaCloud
) -> None:
    write_profile(home, f"[default]\nhost = {cloud.url}\n")  # u2m, nobody logged in
    with pytest.raises(exceptions.NoCachedLoginError, match="menda auth login"):
        in_process.get_credential(CA_URL, None)


def test_menda_cloud_api_error_is_caught_there(
    in_process: MendaCodeArtifactKeyring, monkeypatch: pytest.MonkeyPatch, cloud: FakeMendaCloud
) -> None:
    monkeypatch.setenv("MENDA_CLIENT_ID", CLIENT_ID)
    monkeypatch.setenv("MENDA_CLIENT_SECRET", "not-the-secret")
    monkeypatch.setenv("MENDA_HOST", cloud.url)
    with pytest.raises(exceptions.MendaCloudAPIError) as caught:
        in_process.get_credential(CA_URL, None)
    assert caught.value.status_code == 401
    assert "not-the-secret" not in str(caught.value)
