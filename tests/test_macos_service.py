"""The launchd agent: install-service, uninstall-service and status on macOS, decided here.

There is no Mac here. The platform is passed as ``"darwin"``, and the one call into the
operating system, ``service_runner.run_command``, is replaced by :class:`Launchctl`, which
answers by subcommand and records every command. Everything else is real: the plans, the
runner, ``cli.main`` in this process, the files written under a temporary HOME, and for
``status`` of a running daemon the real server and broker on a real socket.
"""

from __future__ import annotations

import json
import os
import plistlib
import stat
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from menda_credd import cli, service, service_runner
from menda_credd.broker import Broker
from menda_credd.server import CredServer
from menda_credd.service import MakeFolder, RemoveFile, Step, WriteFile
from menda_keyring import paths
from tests.support.server import serving

pytestmark = pytest.mark.unit

UID = os.getuid()
TARGET = f"gui/{UID}/com.menda.credd"


class Launchctl:
    """Stands in for ``launchctl``: an exit status per subcommand, every call recorded.

    ``answers["bootstrap"] = [5, 5, 0]`` answers the first two bootstraps 5, then 0 (the
    last status repeats). ``missing`` raises what ``subprocess.run`` raises when there
    is no such program.
    """

    def __init__(self, missing: bool = False, **answers: int | list[int]) -> None:
        self.missing = missing
        self.answers = {k: v if isinstance(v, list) else [v] for k, v in answers.items()}
        self.calls: list[tuple[str, ...]] = []
        self.quiet: list[bool] = []

    def __call__(self, argv: Sequence[str], quiet: bool = False) -> int:
        self.calls.append(tuple(argv))
        self.quiet.append(quiet)
        if self.missing:
            raise FileNotFoundError(2, "No such file or directory", argv[0])
        queue = self.answers.get(argv[1], [0])
        return queue.pop(0) if len(queue) > 1 else queue[0]

    def subcommands(self) -> list[str]:
        return [argv[1] for argv in self.calls]


@pytest.fixture
def pauses(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The pauses between tries, recorded instead of slept."""
    taken: list[float] = []
    monkeypatch.setattr(service_runner, "pause", taken.append)
    return taken


@pytest.fixture
def mac(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pauses: list[float]) -> Iterator[Path]:
    """A HOME in tmp_path and a private TMPDIR, as a Terminal on macOS has; cli on "darwin".

    Yields HOME.
    """
    home = tmp_path / "Users" / "alice"
    home.mkdir(parents=True)
    tmpdir = tmp_path / "var" / "folders" / "T"
    tmpdir.mkdir(parents=True, mode=0o700)
    tmpdir.chmod(0o700)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("TMPDIR", str(tmpdir))
    for name in ("XDG_RUNTIME_DIR", "XDG_STATE_HOME", "XDG_CONFIG_HOME", "MENDA_CREDD_SOCKET"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(cli, "_platform", lambda: "darwin")
    yield home


def use(monkeypatch: pytest.MonkeyPatch, launchctl: Launchctl) -> Launchctl:
    monkeypatch.setattr(service_runner, "run_command", launchctl)
    return launchctl


def plist_of(home: Path) -> Path:
    return home / "Library" / "LaunchAgents" / "com.menda.credd.plist"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# -- the plans --------------------------------------------------------------------------------


def test_darwin_install_plan_makes_folders_writes_the_plist_then_bootout_enable_bootstrap(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    plan = service.install_plan("darwin", home, {"HOME": str(home)}, uid=501)
    kinds = [type(a).__name__ for a in plan.actions]
    assert kinds == ["MakeFolder"] * 3 + ["WriteFile", "Step", "Step", "Step"]
    folders = [a.path for a in plan.actions if isinstance(a, MakeFolder)]
    assert folders[0] == home / "Library" / "Logs" / "menda-credd"
    assert set(folders[1:]) == {home / ".menda", home / ".local" / "state" / "menda-credd"}
    (written,) = [a for a in plan.actions if isinstance(a, WriteFile)]
    assert written.path == home / "Library" / "LaunchAgents" / "com.menda.credd.plist"
    bootout, enable, bootstrap = plan.steps
    assert bootout.argv == ("launchctl", "bootout", "gui/501/com.menda.credd")
    assert enable.argv == ("launchctl", "enable", "gui/501/com.menda.credd")
    assert bootstrap.argv == ("launchctl", "bootstrap", "gui/501", str(written.path))
    assert [s.may_fail for s in plan.steps] == [True, False, False]
    assert bootstrap.retry_status == 5 and len(bootstrap.pauses) >= 2
    assert enable.retry_status is None and not enable.pauses
    assert not plan.keep_going


def test_darwin_uninstall_plan_boots_out_then_removes_the_plist_and_keeps_the_logs(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    plan = service.uninstall_plan("darwin", home, {}, uid=501)
    assert plan.actions == (
        plan.actions[0],
        RemoveFile(home / "Library" / "LaunchAgents" / "com.menda.credd.plist"),
    )
    (bootout,) = plan.steps
    assert bootout.argv == ("launchctl", "bootout", "gui/501/com.menda.credd")
    assert bootout.may_fail and plan.keep_going
    assert any(str(home / "Library" / "Logs" / "menda-credd") in note for note in plan.notes)


def test_linux_plans_are_the_same_commands_and_every_one_must_succeed(tmp_path: Path) -> None:
    home = tmp_path / "home"
    install = service.install_plan("linux", home, {"HOME": str(home)})
    assert [s.argv for s in install.steps] == [
        ("systemctl", "--user", "daemon-reload"),
        ("systemctl", "--user", "enable", "--now", "menda-credd.socket"),
        ("systemctl", "--user", "enable", "--now", "menda-credd.service"),
    ]
    units = home / ".config" / "systemd" / "user"
    assert [a.path for a in install.actions if isinstance(a, WriteFile)] == [
        units / "menda-credd.service",
        units / "menda-credd.socket",
    ]
    uninstall = service.uninstall_plan("linux", home, {"HOME": str(home)})
    assert [type(a).__name__ for a in uninstall.actions] == [
        "Step",
        "RemoveFile",
        "RemoveFile",
        "Step",
    ]
    assert uninstall.steps[0].argv[:4] == ("systemctl", "--user", "disable", "--now")
    assert uninstall.steps[1].argv == ("systemctl", "--user", "daemon-reload")
    for step in (*install.steps, *uninstall.steps):
        assert not step.may_fail and step.retry_status is None, step


# -- the plist ----------------------------------------------------------------------------------


def test_the_installed_plist_pins_the_socket_and_tmpdir_of_the_installing_shell(
    mac: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    launchctl = use(monkeypatch, Launchctl())
    assert cli.main(["install-service"]) == 0
    path = plist_of(mac)
    data = plistlib.loads(path.read_bytes())
    tmpdir = os.environ["TMPDIR"]
    log = str(mac / "Library" / "Logs" / "menda-credd" / "credd.log")
    assert data["Label"] == "com.menda.credd"
    assert data["StandardOutPath"] == data["StandardErrorPath"] == log
    args = data["ProgramArguments"]
    assert args[-4:] == ["start", "--foreground", "--socket", f"{tmpdir}/menda/credd.sock"]
    assert args[:3] == list(service.current_program())
    assert data["EnvironmentVariables"] == {"PYTHONUNBUFFERED": "1", "TMPDIR": tmpdir}
    assert data["Umask"] == 0o077
    assert data["SoftResourceLimits"] == data["HardResourceLimits"] == {"Core": 0}
    assert data["RunAtLoad"] is True and data["KeepAlive"] is True
    assert mode(path) == 0o600 and mode(path.parent) == 0o700
    # launchd creates the log file, not its folder.
    assert mode(mac / "Library" / "Logs" / "menda-credd") == 0o700
    assert not (mac / "Library" / "Logs" / "menda-credd" / "credd.log").exists()
    assert (mac / ".menda").is_dir() and (mac / ".local" / "state" / "menda-credd").is_dir()
    assert launchctl.subcommands() == ["bootout", "enable", "bootstrap"]
    assert launchctl.calls[-1] == ("launchctl", "bootstrap", f"gui/{UID}", str(path))
    assert service.install_plan("darwin", mac, os.environ).notes == ()


def test_without_tmpdir_the_plist_pins_the_home_socket_and_sets_no_tmpdir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(paths, "darwin_user_temp_dir", lambda: None)  # confstr fails too
    home = tmp_path / "home"
    plan = service.install_plan("darwin", home, {"HOME": str(home)}, uid=UID)
    (written,) = [a for a in plan.actions if isinstance(a, WriteFile)]
    data = plistlib.loads(written.content)
    assert data["ProgramArguments"][-2:] == ["--socket", str(home / ".menda/run/credd.sock")]
    assert data["EnvironmentVariables"] == {"PYTHONUNBUFFERED": "1"}
    (note,) = plan.notes
    assert "no per-user temporary folder was found" in note and str(home) in note


def test_an_explicit_socket_of_the_installing_shell_is_the_one_pinned(tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path), "MENDA_CREDD_SOCKET": "/Users/alice/s/credd.sock"}
    plan = service.install_plan("darwin", tmp_path, env, uid=UID)
    (written,) = [a for a in plan.actions if isinstance(a, WriteFile)]
    assert plistlib.loads(written.content)["ProgramArguments"][-1] == "/Users/alice/s/credd.sock"


def test_the_generic_plist_of_the_repository_pins_no_socket() -> None:
    repo = Path(__file__).resolve().parent.parent / "launchd" / "com.menda.credd.plist"
    data = plistlib.loads(repo.read_bytes())
    assert "--socket" not in data["ProgramArguments"]
    assert data["ProgramArguments"][-2:] == ["start", "--foreground"]
    assert "TMPDIR" not in data["EnvironmentVariables"]


# -- install ------------------------------------------------------------------------------------


def test_bootout_failing_because_nothing_is_loaded_does_not_stop_the_install(
    mac: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    launchctl = use(monkeypatch, Launchctl(bootout=113))
    assert cli.main(["install-service"]) == 0
    assert launchctl.subcommands() == ["bootout", "enable", "bootstrap"]
    out = capsys.readouterr()
    assert "exit status 113: no agent loaded yet is fine" in out.out
    assert out.err == ""


@pytest.mark.parametrize("failing", ["enable", "bootstrap"])
def test_enable_or_bootstrap_failing_is_exit_1_naming_the_command_and_what_to_try(
    failing: str,
    pauses: list[float],
    mac: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    launchctl = use(monkeypatch, Launchctl(**{failing: 125}))
    assert cli.main(["install-service"]) == 1
    expected = ["bootout", "enable", "bootstrap"]
    assert launchctl.subcommands() == expected[: expected.index(failing) + 1]
    errors = capsys.readouterr().err.splitlines()
    assert len(errors) == 1, errors
    (line,) = errors
    assert line.startswith(f"menda-credd: launchctl {failing} gui/{UID}")
    assert "failed (exit status 125)" in line
    assert f"logged in over ssh without a desktop session, there is no gui/{UID} domain" in line
    assert "`menda-credd start` for now" in line and "`launchctl error 125`" in line
    assert pauses == [], "only EIO is tried again"


def test_bootstrap_answering_eio_is_tried_again_after_pauses_then_succeeds(
    pauses: list[float],
    mac: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    launchctl = use(monkeypatch, Launchctl(bootstrap=[5, 5, 0]))
    assert cli.main(["install-service"]) == 0
    assert launchctl.subcommands() == ["bootout", "enable", "bootstrap", "bootstrap", "bootstrap"]
    assert pauses == list(service.BOOTSTRAP_PAUSES[:2])
    out = capsys.readouterr()
    assert out.out.count("exit status 5: tried again in") == 2
    assert out.err == ""


def test_bootstrap_answering_eio_every_time_gives_up_after_its_pauses(
    pauses: list[float],
    mac: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    launchctl = use(monkeypatch, Launchctl(bootstrap=5))
    assert cli.main(["install-service"]) == 1
    tries = len(service.BOOTSTRAP_PAUSES) + 1
    assert launchctl.subcommands().count("bootstrap") == tries
    assert pauses == list(service.BOOTSTRAP_PAUSES)
    (line,) = capsys.readouterr().err.splitlines()
    assert f"failed (exit status 5 after {tries} tries)" in line
    assert "log in at the Mac's screen" in line


def test_launchctl_missing_stops_the_install_at_once(
    mac: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    launchctl = use(monkeypatch, Launchctl(missing=True))
    assert cli.main(["install-service"]) == 1
    # bootout may fail when nothing is loaded, not when there is no launchctl at all.
    assert launchctl.subcommands() == ["bootout"]
    (line,) = capsys.readouterr().err.splitlines()
    assert line == f"menda-credd: launchctl not found; launchctl bootout {TARGET} not run"


def test_a_hung_launchctl_is_a_failure_with_its_timeout(
    mac: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def hangs(argv: Sequence[str], quiet: bool = False) -> int:
        if argv[1] == "enable":
            raise subprocess.TimeoutExpired(list(argv), 60.0)
        return 0

    monkeypatch.setattr(service_runner, "run_command", hangs)
    assert cli.main(["install-service"]) == 1
    (line,) = capsys.readouterr().err.splitlines()
    assert f"launchctl enable {TARGET} failed (did not finish within 60 s)" in line


def test_a_plist_folder_others_can_write_is_refused_before_any_launchctl(
    mac: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    agents = mac / "Library" / "LaunchAgents"
    agents.mkdir(parents=True)
    agents.chmod(0o777)
    launchctl = use(monkeypatch, Launchctl())
    assert cli.main(["install-service"]) == 1
    assert launchctl.calls == []
    assert not plist_of(mac).exists()
    assert "not installing com.menda.credd.plist there" in capsys.readouterr().err


def test_dry_run_prints_files_and_commands_marks_what_may_fail_and_changes_nothing(
    mac: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    launchctl = use(monkeypatch, Launchctl())
    assert cli.main(["install-service", "--dry-run"]) == 0
    assert cli.main(["uninstall-service", "--dry-run"]) == 0
    assert launchctl.calls == []
    assert list(mac.iterdir()) == []
    out = capsys.readouterr().out
    assert f"# would write {plist_of(mac)}" in out
    assert "<string>--socket</string>" in out
    assert f"# would run: launchctl bootout {TARGET}  # may fail: " in out
    assert f"# would run: launchctl enable {TARGET}  # clears" in out
    assert f"# would run: launchctl bootstrap gui/{UID} {plist_of(mac)}  # loads" in out
    assert f"# would remove {plist_of(mac)}" in out
    assert f"# would create {mac / 'Library' / 'Logs' / 'menda-credd'} (mode 0700)" in out


# -- uninstall ----------------------------------------------------------------------------------


def test_uninstall_with_the_agent_not_loaded_removes_the_plist_and_exits_0(
    mac: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    use(monkeypatch, Launchctl())
    assert cli.main(["install-service"]) == 0
    logs = mac / "Library" / "Logs" / "menda-credd"
    (logs / "credd.log").write_text("what launchd wrote\n")
    capsys.readouterr()
    launchctl = use(monkeypatch, Launchctl(bootout=3))
    assert cli.main(["uninstall-service"]) == 0
    assert launchctl.calls == [("launchctl", "bootout", TARGET)]
    assert not plist_of(mac).exists()
    assert (logs / "credd.log").exists()
    out = capsys.readouterr()
    assert f"removed {plist_of(mac)}" in out.out
    assert f"logs, if any, are left in {logs}/" in out.out
    assert out.err == ""


def test_uninstall_without_launchctl_still_removes_the_plist_but_says_it_failed(
    mac: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    use(monkeypatch, Launchctl())
    assert cli.main(["install-service"]) == 0
    use(monkeypatch, Launchctl(missing=True))
    assert cli.main(["uninstall-service"]) == 1
    assert not plist_of(mac).exists()
    assert "launchctl not found" in capsys.readouterr().err


def test_uninstall_of_nothing_installed_is_fine(
    mac: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    use(monkeypatch, Launchctl(bootout=113))
    assert cli.main(["uninstall-service"]) == 0
    assert f"removed {plist_of(mac)}" not in capsys.readouterr().out


# -- linux, through the same runner ---------------------------------------------------------


def test_linux_install_stops_at_the_first_failing_systemctl(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    for name in ("XDG_STATE_HOME", "XDG_CONFIG_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(cli, "_platform", lambda: "linux")
    systemctl = use(monkeypatch, Launchctl(**{"--user": 1}))
    assert cli.main(["install-service"]) == 1
    assert systemctl.calls == [("systemctl", "--user", "daemon-reload")]
    assert (tmp_path / ".config" / "systemd" / "user" / "menda-credd.service").exists()
    (line,) = capsys.readouterr().err.splitlines()
    assert line == "menda-credd: systemctl --user daemon-reload failed (exit status 1)"


# -- status -------------------------------------------------------------------------------------


def test_service_state_asks_launchctl_print_and_uses_only_its_exit_status(tmp_path: Path) -> None:
    launchctl = Launchctl(print=0)
    state = service.service_state("darwin", tmp_path, launchctl, uid=501)
    assert launchctl.calls == [("launchctl", "print", "gui/501/com.menda.credd")]
    assert state.loaded is True and state.installed is False
    assert service.service_state("darwin", tmp_path, Launchctl(print=113), uid=501).loaded is False
    unknown = service.service_state("darwin", tmp_path, Launchctl(missing=True), uid=501)
    assert unknown.loaded is None and unknown.problem is not None
    assert "launchctl not found" in (unknown.line() or "")


def test_service_state_on_linux_looks_at_the_unit_file_and_runs_nothing(tmp_path: Path) -> None:
    runs = Launchctl()
    env = {"HOME": str(tmp_path)}
    assert service.service_state("linux", tmp_path, runs, env).line() is None
    unit = tmp_path / ".config" / "systemd" / "user" / "menda-credd.service"
    unit.parent.mkdir(parents=True)
    unit.write_text("[Unit]\n")
    state = service.service_state("linux", tmp_path, runs, env)
    assert state.line() == f"systemd user unit menda-credd.service: installed ({unit})"
    assert state.as_json() == {
        "manager": "systemd",
        "name": "menda-credd.service",
        "path": str(unit),
        "installed": True,
        "loaded": None,
    }
    assert runs.calls == []


@pytest.mark.parametrize(
    ("installed", "print_status", "expected"),
    [
        (True, 0, "launchd agent com.menda.credd: loaded ({plist})"),
        (True, 113, "launchd agent com.menda.credd: installed ({plist}) but not loaded"),
        (False, 113, "launchd agent com.menda.credd: not installed (menda-credd install-service)"),
        (False, 0, "launchd agent com.menda.credd: loaded, but {plist} is gone"),
    ],
)
def test_status_without_a_daemon_says_whether_the_agent_is_installed_and_loaded(
    installed: bool,
    print_status: int,
    expected: str,
    mac: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    if installed:
        use(monkeypatch, Launchctl())
        assert cli.main(["install-service"]) == 0
    launchctl = use(monkeypatch, Launchctl(print=print_status))
    socket = str(mac / "no-daemon.sock")
    capsys.readouterr()
    assert cli.main(["status", "--socket", socket]) == 3
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("menda-credd not running")
    assert len(lines) == 2, lines
    assert lines[1].startswith("service:      " + expected.format(plist=plist_of(mac)))
    assert launchctl.calls == [("launchctl", "print", TARGET)]
    assert launchctl.quiet == [True], "launchctl print's text is not shown"

    assert cli.main(["status", "--socket", socket, "--json"]) == 3
    report = json.loads(capsys.readouterr().out)
    assert report["running"] is False
    assert report["service"] == {
        "manager": "launchd",
        "name": "com.menda.credd",
        "path": str(plist_of(mac)),
        "installed": installed,
        "loaded": print_status == 0,
    }


def test_status_of_a_running_daemon_shows_the_agent_line_and_service_object(
    mac: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    sockdir: Path,
) -> None:
    use(monkeypatch, Launchctl())
    assert cli.main(["install-service"]) == 0
    use(monkeypatch, Launchctl(print=0))
    path = str(sockdir / "credd.sock")

    async def no_exchange(*args: object, **kwargs: object) -> object:
        raise AssertionError("status makes no exchange")

    capsys.readouterr()
    with serving(CredServer(Broker(no_exchange), path), path):  # type: ignore[arg-type]
        assert cli.main(["status", "--socket", path]) == 0
        text = capsys.readouterr().out
        assert cli.main(["status", "--socket", path, "--json"]) == 0
        report = json.loads(capsys.readouterr().out)
    lines = text.splitlines()
    assert lines[0].startswith("menda-credd ") and f"running (pid {os.getpid()})" in lines[0]
    assert f"service:      launchd agent com.menda.credd: loaded ({plist_of(mac)})" in lines
    assert lines.index(next(ln for ln in lines if ln.startswith("service:"))) < lines.index(
        next(ln for ln in lines if ln.startswith("entries:"))
    )
    assert report["running"] is True
    assert report["service"]["loaded"] is True and report["service"]["installed"] is True


def test_step_records_are_values() -> None:
    one = Step(("launchctl", "enable", "x"), "why")
    assert one == Step(("launchctl", "enable", "x"), "why") and hash(one)
    with pytest.raises(AttributeError):
        one.may_fail = True  # type: ignore[misc]
