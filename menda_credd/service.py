"""Service files for systemd (user units) and launchd (a LaunchAgent), and how to enable them.

The files in the repository's ``systemd/`` and ``launchd/`` folders are these
templates rendered with :data:`REPO_PROGRAM`; ``menda-credd install-service``
renders them for the running interpreter instead.
"""

from __future__ import annotations

import os
import plistlib
import sys
from dataclasses import dataclass
from pathlib import Path

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


def launchd_plist(program: tuple[str, ...] | list[str], log_path: str) -> bytes:
    data = {
        "Label": LAUNCHD_LABEL,
        "ProgramArguments": [*program, "start", "--foreground"],
        "RunAtLoad": True,
        "KeepAlive": True,
        "ProcessType": "Background",
        "StandardOutPath": log_path,
        "StandardErrorPath": log_path,
        "EnvironmentVariables": {"PYTHONUNBUFFERED": "1"},
        "SoftResourceLimits": {"Core": 0},
        "HardResourceLimits": {"Core": 0},
        "Umask": 0o077,
    }
    return plistlib.dumps(data, sort_keys=False)


def current_program() -> tuple[str, ...]:
    """This interpreter running this package: survives venv moves of the console script."""
    return (sys.executable, "-m", "menda_credd")


@dataclass(frozen=True)
class Plan:
    """Files to write (path -> content) and commands to run, in order."""

    files: dict[Path, bytes]
    commands: list[list[str]]
    remove: list[Path]
    after: tuple[tuple[str, ...], ...] = ()


def systemd_dir(home: Path, env: dict[str, str] | None = None) -> Path:
    env = dict(os.environ) if env is None else env
    config = env.get("XDG_CONFIG_HOME") or str(home / ".config")
    return Path(config) / "systemd" / "user"


def install_plan(platform: str, home: Path, env: dict[str, str] | None = None) -> Plan:
    program = current_program()
    if platform == "darwin":
        path = home / "Library" / "LaunchAgents" / f"{LAUNCHD_LABEL}.plist"
        log_path = str(home / "Library" / "Logs" / "menda-credd.log")
        domain = f"gui/{os.getuid()}"
        return Plan(
            {path: launchd_plist(program, log_path)},
            [
                ["launchctl", "bootout", f"{domain}/{LAUNCHD_LABEL}"],
                ["launchctl", "bootstrap", domain, str(path)],
            ],
            [],
        )
    folder = systemd_dir(home, env)
    return Plan(
        {
            folder / f"{UNIT_NAME}.service": service_unit(program).encode(),
            folder / f"{UNIT_NAME}.socket": socket_unit().encode(),
        },
        [
            ["systemctl", "--user", "daemon-reload"],
            ["systemctl", "--user", "enable", "--now", f"{UNIT_NAME}.socket"],
            ["systemctl", "--user", "enable", "--now", f"{UNIT_NAME}.service"],
        ],
        [],
    )


def uninstall_plan(platform: str, home: Path, env: dict[str, str] | None = None) -> Plan:
    if platform == "darwin":
        path = home / "Library" / "LaunchAgents" / f"{LAUNCHD_LABEL}.plist"
        return Plan({}, [["launchctl", "bootout", f"gui/{os.getuid()}/{LAUNCHD_LABEL}"]], [path])
    folder = systemd_dir(home, env)
    return Plan(
        {},
        [
            [
                "systemctl",
                "--user",
                "disable",
                "--now",
                f"{UNIT_NAME}.service",
                f"{UNIT_NAME}.socket",
            ],
        ],
        [folder / f"{UNIT_NAME}.service", folder / f"{UNIT_NAME}.socket"],
        (("systemctl", "--user", "daemon-reload"),),
    )
