"""``menda-credd``: start, stop and inspect the per-user credential daemon.

Exit statuses: ``start`` 0 when the daemon runs (started now or already running),
1 when it could not start. ``stop`` 0 when no daemon runs afterwards (including
"not running" before: stopping is idempotent), 1 when it would not stop.
``status`` 0 when running, 3 when not running (as ``systemctl status``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from menda_keyring.daemon_client import (
    DaemonSpeaksOtherVersion,
    DaemonUnavailable,
    DaemonUntrusted,
)
from menda_keyring.daemon_protocol import VERSION as PROTOCOL
from menda_keyring.paths import default_log_file
from menda_keyring.paths import socket_path as default_socket_path
from menda_keyring.private_dir import make_private_dirs
from menda_keyring.procfs import pid_alive

from . import __version__, runtime, service, service_runner
from .broker import DEFAULT_IDLE_TIMEOUT
from .prewarm import enabled_by_env
from .status_report import SERVICE_LABEL, format_status

START_TIMEOUT = 15.0
STOP_TIMEOUT = 15.0
LOG_LEVELS = ("debug", "info", "warning", "error")


def parse_duration(text: str) -> float:
    """``8h``, ``30m``, ``45s``, ``1d`` or plain seconds; must be positive."""
    raw = text.strip().lower()
    scale = {"s": 1, "m": 60, "h": 3600, "d": 86400}.get(raw[-1:])
    number = raw[:-1] if scale is not None else raw
    try:
        value = float(number) * (scale or 1)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (e.g. 8h, 30m, 600)") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"duration must be positive: {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="menda-credd",
        description="Per-user credential daemon for menda-keyring (CodeArtifact tokens).",
    )
    parser.add_argument("--version", action="version", version=f"menda-credd {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--socket", help="socket path (default: the shim's rule, or MENDA_CREDD_SOCKET)"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    start = sub.add_parser("start", parents=[common], help="start the daemon (detached)")
    start.add_argument(
        "--foreground", action="store_true", help="do not detach (for service managers)"
    )
    start.add_argument("--log-level", choices=LOG_LEVELS, default="info")
    start.add_argument(
        "--idle-timeout",
        type=parse_duration,
        default=None,
        help="drop tokens unused this long (default 8h; env MENDA_CREDD_IDLE_TIMEOUT)",
    )
    start.add_argument("--log-file", help="log file of a detached daemon")
    start.add_argument(
        "--no-prewarm",
        action="store_true",
        help="do not remember what is asked for nor exchange it ahead "
        "(env MENDA_CREDD_PREWARM=off)",
    )

    stop = sub.add_parser("stop", parents=[common], help="stop the daemon")
    stop.add_argument("--timeout", type=float, default=STOP_TIMEOUT)

    status = sub.add_parser("status", parents=[common], help="show the daemon's state")
    status.add_argument("--json", action="store_true", help="machine-readable output")

    for name, text in (
        ("install-service", "install and enable a systemd user unit / launchd agent"),
        ("uninstall-service", "disable and remove the systemd user unit / launchd agent"),
    ):
        cmd = sub.add_parser(name, help=text)
        cmd.add_argument(
            "--dry-run", action="store_true", help="print files and commands, change nothing"
        )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handlers = {
        "start": cmd_start,
        "stop": cmd_stop,
        "status": cmd_status,
        "install-service": cmd_install,
        "uninstall-service": cmd_uninstall,
    }
    try:
        return handlers[args.command](args)
    except KeyboardInterrupt:
        return 130


def _socket(args: argparse.Namespace) -> str:
    return args.socket or default_socket_path(os.environ)


def _idle_timeout(args: argparse.Namespace) -> float:
    if args.idle_timeout is not None:
        return args.idle_timeout
    raw = os.environ.get("MENDA_CREDD_IDLE_TIMEOUT", "").strip()
    if raw:
        try:
            return parse_duration(raw)
        except argparse.ArgumentTypeError as exc:
            print(f"menda-credd: MENDA_CREDD_IDLE_TIMEOUT: {exc}", file=sys.stderr)
    return DEFAULT_IDLE_TIMEOUT


def _prewarm(args: argparse.Namespace) -> bool:
    return not args.no_prewarm and enabled_by_env(os.environ)


# -- start --------------------------------------------------------------------------------


def cmd_start(args: argparse.Namespace) -> int:
    if args.foreground:
        from .daemon import Options, run_foreground, setup_logging

        setup_logging(args.log_level)
        options = Options(
            socket=args.socket, idle_timeout=_idle_timeout(args), prewarm=_prewarm(args)
        )
        return run_foreground(options)
    path = _socket(args)
    try:
        probe = runtime.probe_daemon(path)
    except DaemonUntrusted as exc:
        print(f"menda-credd: {exc.reason}; not starting a daemon there", file=sys.stderr)
        return 1
    if probe is not None and (
        probe.reported_pid is not None or probe.other_release(__version__) is not None
    ):
        print(runtime.running_message(probe, __version__))
        return 0
    log_path = Path(args.log_file) if args.log_file else default_log_file()
    try:
        make_private_dirs(log_path.parent)
    except OSError as exc:
        print(f"menda-credd: cannot create {log_path.parent}: {exc.strerror}", file=sys.stderr)
        return 1
    command = [
        sys.executable,
        "-m",
        "menda_credd",
        "start",
        "--foreground",
        "--socket",
        path,
        "--log-level",
        args.log_level,
        "--idle-timeout",
        str(_idle_timeout(args)),
    ]
    if not _prewarm(args):
        command.append("--no-prewarm")
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600)
    try:
        os.fchmod(fd, 0o600)  # a log kept from an older version may have been wider
        child = subprocess.Popen(
            command,
            env=runtime.child_env(),
            stdin=subprocess.DEVNULL,
            stdout=fd,
            stderr=fd,
            cwd="/",
            start_new_session=True,
            close_fds=True,
        )
    finally:
        os.close(fd)
    end = time.monotonic() + START_TIMEOUT
    while time.monotonic() < end:
        pid = runtime.ping_pid(path, timeout=1.0)
        if pid is not None:
            if pid == child.pid:
                print(f"menda-credd started (pid {pid}, socket {path})")
            else:
                print(f"menda-credd already running (pid {pid})")
            return 0
        code = child.poll()
        if code is not None:
            pid = runtime.ping_pid(path, timeout=1.0)
            if pid is not None:
                print(f"menda-credd already running (pid {pid})")
                return 0
            print(
                f"menda-credd failed to start (exit status {code}); see {log_path}", file=sys.stderr
            )
            _print_tail(log_path)
            return 1
        time.sleep(0.05)
    print(
        f"menda-credd did not answer on {path} within {START_TIMEOUT:.0f} s; see {log_path}",
        file=sys.stderr,
    )
    return 1


def _print_tail(path: Path, lines: int = 10) -> None:
    with contextlib.suppress(OSError):
        for line in path.read_text(errors="replace").splitlines()[-lines:]:
            print(f"  {line}", file=sys.stderr)


# -- stop ---------------------------------------------------------------------------------


def cmd_stop(args: argparse.Namespace) -> int:
    """Signal only the kernel's peer of the socket, and only when it is our menda-credd."""
    path = _socket(args)
    try:
        probe, refusal = runtime.stoppable_pid(path)
    except DaemonUntrusted as exc:
        print(f"menda-credd: {exc.reason}; not stopping anything", file=sys.stderr)
        return 1
    if refusal is not None:
        print(f"menda-credd: not stopping anything at {path}: {refusal}", file=sys.stderr)
        return 1
    if probe is None or probe.peer.pid is None:
        holder = runtime.lock_holder(path)
        if holder is None:
            print("menda-credd not running")
            return 0
        print(
            f"menda-credd: the life lock of {path} is held (it names pid {holder}) but nothing "
            "accepts on the socket; not signalling a pid read from a file",
            file=sys.stderr,
        )
        return 1
    pid = probe.peer.pid
    if not probe.answered:
        print(f"menda-credd (pid {pid}) is not answering; stopping it", file=sys.stderr)
    try:
        os.kill(pid, signal.SIGTERM)
        os.kill(pid, signal.SIGCONT)
    except ProcessLookupError:
        print("menda-credd not running")
        return 0
    end = time.monotonic() + args.timeout
    while time.monotonic() < end:
        if not pid_alive(pid) or (
            runtime.ping_pid(path, timeout=0.5) is None
            and not os.path.lexists(path)
            and runtime.lock_holder(path) is None
        ):
            print(f"menda-credd stopped (pid {pid})")
            return 0
        time.sleep(0.05)
    print(f"menda-credd (pid {pid}) did not stop within {args.timeout:.0f} s", file=sys.stderr)
    return 1


# -- status -------------------------------------------------------------------------------


def cmd_status(args: argparse.Namespace) -> int:
    """The daemon's state, and the service manager's: its own line, or ``service`` in JSON."""
    path = _socket(args)
    try:
        status = runtime.status(path, timeout=5.0)
    except DaemonUntrusted as exc:
        if args.json:
            print(json.dumps({"running": False, "socket": path, "refused": exc.reason}))
        print(f"menda-credd: {exc.reason}; not asking it anything", file=sys.stderr)
        return 1
    except DaemonSpeaksOtherVersion as exc:
        other = f"menda-credd {exc.package}" if exc.package else "a menda-credd of another release"
        speaks = f"protocol v{exc.protocol}" if exc.protocol else "another protocol version"
        state = _service_state()
        if args.json:
            report = {
                "running": True,
                "socket": path,
                "version": exc.package,
                "protocol": exc.protocol,
                "cli_version": __version__,
                "cli_protocol": PROTOCOL,
                "compatible": False,
                "service": state.as_json(),
            }
            print(json.dumps(report, indent=2, sort_keys=True))
        else:
            print(
                f"{other} is running on {path} and speaks {speaks}; this menda-credd "
                f"{__version__} speaks v{PROTOCOL} and cannot read its status. "
                "Restart it: menda-credd stop && menda-credd start"
            )
            _print_service_line(state)
        return 0
    except DaemonUnavailable as exc:
        holder = runtime.lock_holder(path)
        state = _service_state()
        if args.json:
            report = {"running": False, "socket": path, "reason": exc.reason}
            if holder is not None:
                report["unresponsive_pid"] = holder
            report["service"] = state.as_json()
            print(json.dumps(report))
        else:
            if holder is not None:
                print(f"menda-credd (pid {holder}) holds {path} but is not answering: {exc.reason}")
            else:
                print(f"menda-credd not running (socket {path}: {exc.reason})")
            _print_service_line(state)
        return 3
    state = _service_state()
    if args.json:
        report = {"running": True, **status, "cli_version": __version__, "service": state.as_json()}
        print(json.dumps(report, indent=2, sort_keys=True))
    else:
        print(format_status(status, __version__, service=state.line()))
    return 0


def _print_service_line(state: service.ServiceState) -> None:
    line = state.line()
    if line is not None:
        print(SERVICE_LABEL + line)


# -- services -----------------------------------------------------------------------------


def _platform() -> str:
    return "darwin" if sys.platform == "darwin" else "linux"


def _home() -> Path:
    return Path(os.path.expanduser("~"))


def cmd_install(args: argparse.Namespace) -> int:
    plan = service.install_plan(_platform(), _home(), os.environ)
    return service_runner.run_plan(
        plan, args.dry_run, run=service_runner.run_command, sleep=service_runner.pause
    )


def cmd_uninstall(args: argparse.Namespace) -> int:
    plan = service.uninstall_plan(_platform(), _home(), os.environ)
    return service_runner.run_plan(
        plan, args.dry_run, run=service_runner.run_command, sleep=service_runner.pause
    )


def _service_state() -> service.ServiceState:
    """The service manager's side of ``status`` (launchctl's output is not shown)."""
    return service.service_state(
        _platform(),
        _home(),
        lambda argv: service_runner.run_command(argv, quiet=True),
        os.environ,
    )
