"""Service files for systemd (user units) and launchd (a LaunchAgent), and how to enable them.

The files in the repository's ``systemd/`` and ``launchd/`` folders are these
templates rendered with :data:`REPO_PROGRAM`; ``menda-credd install-service``
renders them for the running interpreter instead.

Plans are decisions only (what is written, which commands run in what order, which may
fail); ``service_runner`` carries them out behind one seam, the command runner.
"""

from __future__ import annotations

import os
import plistlib
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from menda_keyring.paths import default_log_file, per_user_dir, prewarm_state_path, socket_path

UNIT_NAME = "menda-credd"
LAUNCHD_LABEL = "com.menda.credd"
#: What the checked-in files start (a ``uv tool`` / ``pipx`` install of the console script).
REPO_PROGRAM = ("%h/.local/bin/menda-credd",)
REPO_PLIST_PROGRAM = ("/usr/local/bin/menda-credd",)
REPO_PLIST_LOG = "/tmp/menda-credd.log"  # noqa: S108 - placeholder; install-service uses ~/Library/Logs

SERVICE_TEMPLATE = """\
# menda-credd: per-user credential daemon for menda-keyring (uv/pip CodeArtifact tokens).
# Install with `menda-credd install-service`, which writes this file for your interpreter.
[Unit]
Description=menda-credd credential daemon for menda-keyring
Documentation=https://github.com/menda/menda-keyring
Requires={unit}.socket
After={unit}.socket

[Service]
Type=notify
NotifyAccess=main
ExecStart={exec_start}
Restart=on-failure
RestartSec=2
TimeoutStopSec=15
KillMode=mixed
UMask=0077
LimitCORE=0
Environment=PYTHONUNBUFFERED=1
# Sandboxing: everything read-only but the Menda state folder (shared token cache) and
# the daemon's own state (pre-warm memory); install-service creates both (0700) so that
# they exist to be made writable.
NoNewPrivileges=yes
ProtectSystem=strict
ProtectHome=read-only
ReadWritePaths=-%h/.menda
ReadWritePaths=-%S/menda-credd
PrivateTmp=yes
PrivateDevices=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
LockPersonality=yes
SystemCallArchitectures=native

[Install]
WantedBy=default.target
Also={unit}.socket
"""

SOCKET_TEMPLATE = """\
# menda-credd listens here; the shim finds it at $XDG_RUNTIME_DIR/menda/credd.sock.
[Unit]
Description=menda-credd credential daemon socket

[Socket]
ListenStream=%t/menda/credd.sock
SocketMode=0600
DirectoryMode=0700
RemoveOnStop=yes

[Install]
WantedBy=sockets.target
"""


def exec_start(argv: tuple[str, ...] | list[str]) -> str:
    """A systemd ``ExecStart=`` value: each argument quoted when it needs it."""
    quoted = []
    for arg in [*argv, "start", "--foreground"]:
        if any(ch.isspace() or ch in "\"'\\;$" for ch in arg):
            arg = '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'
        quoted.append(arg)
    return " ".join(quoted)


def service_unit(program: tuple[str, ...] | list[str]) -> str:
    return SERVICE_TEMPLATE.format(unit=UNIT_NAME, exec_start=exec_start(program))


def socket_unit() -> str:
    return SOCKET_TEMPLATE


def launchd_plist(
    program: tuple[str, ...] | list[str],
    log_path: str,
    socket: str | None = None,
    tmpdir: str | None = None,
) -> bytes:
    """The LaunchAgent: ``program start --foreground``, logging to ``log_path``.

    ``socket`` pins the daemon's socket (``--socket``): launchd does not reliably give
    an agent the Terminal's ``TMPDIR``, so the daemon must not work the path out again
    from its own environment. ``tmpdir``, the installing shell's, is passed on as
    ``TMPDIR`` all the same, for anything else that looks there.
    """
    arguments = [*program, "start", "--foreground"]
    if socket is not None:
        arguments += ["--socket", socket]
    environment = {"PYTHONUNBUFFERED": "1"}
    if tmpdir:
        environment["TMPDIR"] = tmpdir
    data = {
        "Label": LAUNCHD_LABEL,
        "ProgramArguments": arguments,
        "RunAtLoad": True,
        "KeepAlive": True,
        "ProcessType": "Background",
        "StandardOutPath": log_path,
        "StandardErrorPath": log_path,
        "EnvironmentVariables": environment,
        "SoftResourceLimits": {"Core": 0},
        "HardResourceLimits": {"Core": 0},
        "Umask": 0o077,
    }
    return plistlib.dumps(data, sort_keys=False)


def current_program() -> tuple[str, ...]:
    """This interpreter running this package: survives venv moves of the console script."""
    return (sys.executable, "-m", "menda_credd")


# -- plans: what install-service and uninstall-service do, decided without doing it -------


@dataclass(frozen=True)
class Step:
    """One command of a plan, and what its failure means.

    ``may_fail``: a non-zero exit status happens in a normal run (``bootout`` of an agent
    that is not loaded) and the plan goes on. ``retry_status``: that exit status is a
    passing state of the service manager, so the command is tried again after each of
    ``pauses``. ``hint``: what the user can do when the step fails for good (``{status}``
    is replaced by the exit status).
    """

    argv: tuple[str, ...]
    why: str
    may_fail: bool = False
    retry_status: int | None = None
    pauses: tuple[float, ...] = ()
    hint: str = ""


@dataclass(frozen=True)
class MakeFolder:
    """A folder made 0700 when missing (an existing one is left as it is)."""

    path: Path
    why: str


@dataclass(frozen=True)
class WriteFile:
    """A service file written 0600 into a folder others cannot write."""

    path: Path
    content: bytes


@dataclass(frozen=True)
class RemoveFile:
    """A file removed if it is there."""

    path: Path


Action = MakeFolder | WriteFile | Step | RemoveFile


@dataclass(frozen=True)
class Plan:
    """What to do, in order.

    The first failure of a must-succeed action stops the plan, unless ``keep_going``:
    an uninstall still removes its files when stopping the service failed (the failure
    is reported all the same). ``notes`` are said at the end (what is left in place).
    """

    actions: tuple[Action, ...]
    keep_going: bool = False
    notes: tuple[str, ...] = ()

    @property
    def steps(self) -> tuple[Step, ...]:
        return tuple(a for a in self.actions if isinstance(a, Step))


#: Pauses between tries of ``launchctl bootstrap`` answering EIO (5 tries, 7.5 s at most):
#: launchd says "Bootstrap failed: 5: Input/output error" while the instance just booted
#: out is still going away.
BOOTSTRAP_PAUSES = (0.5, 1.0, 2.0, 4.0)
EIO = 5

#: What to try when enable or bootstrap fails for good; the likeliest cause first.
GUI_SESSION_HINT = (
    "logged in over ssh without a desktop session, there is no {domain} domain: log in "
    "at the Mac's screen (or through Screen Sharing) and run `menda-credd install-service` "
    "again, or run `menda-credd start` for now; `launchctl error {{status}}` names the status"
)


def systemd_dir(home: Path, env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    config = env.get("XDG_CONFIG_HOME") or str(home / ".config")
    return Path(config) / "systemd" / "user"


def plist_path(home: Path) -> Path:
    return home / "Library" / "LaunchAgents" / f"{LAUNCHD_LABEL}.plist"


def _state_folders(home: Path, env: Mapping[str, str]) -> tuple[MakeFolder, ...]:
    """The Menda folder and the pre-warm state folder: the systemd unit makes both
    writable in its read-only sandbox, so they must exist; made for launchd too, as the
    daemon would make them anyway."""
    return (
        MakeFolder(home / ".menda", "the shared token cache"),
        MakeFolder(prewarm_state_path(env).parent, "the daemon's pre-warm memory"),
    )


def install_plan(
    platform: str,
    home: Path,
    env: Mapping[str, str] | None = None,
    uid: int | None = None,
    program: tuple[str, ...] | None = None,
) -> Plan:
    """Install and start the service for ``program`` (default: this interpreter)."""
    env = os.environ if env is None else env
    uid = os.getuid() if uid is None else uid
    program = current_program() if program is None else program
    if platform == "darwin":
        return _launchd_install(home, env, uid, program)
    folder = systemd_dir(home, env)
    return Plan(
        (
            *_state_folders(home, env),
            WriteFile(folder / f"{UNIT_NAME}.service", service_unit(program).encode()),
            WriteFile(folder / f"{UNIT_NAME}.socket", socket_unit().encode()),
            Step(("systemctl", "--user", "daemon-reload"), "read the new unit files"),
            Step(
                ("systemctl", "--user", "enable", "--now", f"{UNIT_NAME}.socket"),
                "listen on the socket now and at every login",
            ),
            Step(
                ("systemctl", "--user", "enable", "--now", f"{UNIT_NAME}.service"),
                "start the daemon now and at every login",
            ),
        )
    )


def _launchd_install(
    home: Path, env: Mapping[str, str], uid: int, program: tuple[str, ...]
) -> Plan:
    path = plist_path(home)
    log = default_log_file(home, "darwin")
    domain = f"gui/{uid}"
    target = f"{domain}/{LAUNCHD_LABEL}"
    pinned = socket_path(env, uid, "darwin")
    plist = launchd_plist(
        program,
        str(log),
        socket=pinned,
        tmpdir=env.get("TMPDIR") or None,
    )
    hint = GUI_SESSION_HINT.format(domain=domain)
    notes: tuple[str, ...] = ()
    if not env.get("MENDA_CREDD_SOCKET") and per_user_dir(env, uid, "darwin") is None:
        # Neither TMPDIR nor confstr gave a per-user temporary folder (not expected on a
        # Mac): shells that do find one look for the socket there, not here.
        notes = (
            f"no per-user temporary folder was found (TMPDIR, confstr), so the agent "
            f"listens on {pinned}; a shell that finds one looks elsewhere: run "
            "install-service from a Terminal, or set MENDA_CREDD_SOCKET everywhere",
        )
    return Plan(
        (
            MakeFolder(log.parent, "launchd creates the log file, not its folder"),
            *_state_folders(home, env),
            WriteFile(path, plist),
            Step(
                ("launchctl", "bootout", target),
                "no agent loaded yet is fine (3: No such process, 113: Could not find "
                "service); it stops an older one so that the new plist takes effect",
                may_fail=True,
            ),
            # enable only clears the label's disabled override in the domain (launchctl(1):
            # a disabled service cannot be loaded in that domain until enabled again),
            # loaded or not: "not loaded" does not make it fail, a missing gui domain
            # does, and bootstrap could not work then.
            Step(
                ("launchctl", "enable", target),
                "clears a `launchctl disable` of the label, under which bootstrap is refused",
                hint=hint,
            ),
            Step(
                ("launchctl", "bootstrap", domain, str(path)),
                "loads the agent: the daemon starts now (RunAtLoad) and at every login",
                retry_status=EIO,
                pauses=BOOTSTRAP_PAUSES,
                hint=hint,
            ),
        ),
        notes=notes,
    )


def uninstall_plan(
    platform: str,
    home: Path,
    env: Mapping[str, str] | None = None,
    uid: int | None = None,
) -> Plan:
    env = os.environ if env is None else env
    uid = os.getuid() if uid is None else uid
    if platform == "darwin":
        logs = default_log_file(home, "darwin").parent
        return Plan(
            (
                Step(
                    ("launchctl", "bootout", f"gui/{uid}/{LAUNCHD_LABEL}"),
                    "not loaded is fine: the plist is removed all the same",
                    may_fail=True,
                ),
                RemoveFile(plist_path(home)),
            ),
            keep_going=True,
            notes=(f"logs, if any, are left in {logs}/ (remove it when you no longer need them)",),
        )
    folder = systemd_dir(home, env)
    return Plan(
        (
            Step(
                (
                    "systemctl",
                    "--user",
                    "disable",
                    "--now",
                    f"{UNIT_NAME}.service",
                    f"{UNIT_NAME}.socket",
                ),
                "stop the daemon and its socket, and no longer start them at login",
            ),
            RemoveFile(folder / f"{UNIT_NAME}.service"),
            RemoveFile(folder / f"{UNIT_NAME}.socket"),
            Step(("systemctl", "--user", "daemon-reload"), "forget the removed unit files"),
        ),
        keep_going=True,
    )


# -- is it installed, is it loaded ----------------------------------------------------------


@dataclass(frozen=True)
class ServiceState:
    """What ``status`` says of the service manager's side: files installed, agent loaded.

    ``loaded`` is None when it was not asked (systemd: only the unit files are looked at)
    or could not be told (``problem`` says why).
    """

    manager: str
    name: str
    path: Path
    installed: bool
    loaded: bool | None
    problem: str | None = None

    def line(self) -> str | None:
        """One line for the text output; None when there is nothing worth a line."""
        if self.manager == "systemd":
            return (
                f"systemd user unit {self.name}: installed ({self.path})"
                if self.installed
                else None
            )
        head = f"launchd agent {self.name}:"
        if self.loaded is None:
            found = f"installed ({self.path})" if self.installed else "not installed"
            return f"{head} {found}; {self.problem or 'cannot tell whether it is loaded'}"
        if self.loaded and self.installed:
            return f"{head} loaded ({self.path})"
        if self.loaded:
            return (
                f"{head} loaded, but {self.path} is gone (menda-credd uninstall-service unloads it)"
            )
        if self.installed:
            return (
                f"{head} installed ({self.path}) but not loaded "
                "(menda-credd install-service loads it)"
            )
        return f"{head} not installed (menda-credd install-service)"

    def as_json(self) -> dict[str, object]:
        report: dict[str, object] = {
            "manager": self.manager,
            "name": self.name,
            "path": str(self.path),
            "installed": self.installed,
            "loaded": self.loaded,
        }
        if self.problem is not None:
            report["problem"] = self.problem
        return report


def status_argv(uid: int) -> tuple[str, ...]:
    """Exit status 0 when the agent is loaded; its text is not an API and is not read."""
    return ("launchctl", "print", f"gui/{uid}/{LAUNCHD_LABEL}")


def service_state(
    platform: str,
    home: Path,
    run: Callable[[Sequence[str]], int],
    env: Mapping[str, str] | None = None,
    uid: int | None = None,
) -> ServiceState:
    """Whether the service files are installed and (launchd) the agent is loaded.

    On Linux no ``systemctl`` is run: ``status`` stays instant and works without a user
    bus (over ssh, in containers); the unit files say what was installed.
    """
    if platform != "darwin":
        unit = systemd_dir(home, env) / f"{UNIT_NAME}.service"
        return ServiceState("systemd", f"{UNIT_NAME}.service", unit, unit.exists(), None)
    uid = os.getuid() if uid is None else uid
    path = plist_path(home)
    installed = path.exists()
    try:
        loaded: bool | None = run(status_argv(uid)) == 0
        problem = None
    except FileNotFoundError:
        loaded, problem = None, "launchctl not found, cannot tell whether it is loaded"
    except subprocess.TimeoutExpired as exc:
        loaded = None
        problem = f"launchctl print did not answer within {exc.timeout:.0f} s"
    return ServiceState("launchd", LAUNCHD_LABEL, path, installed, loaded, problem)
