"""Carries out a service plan: the I/O edge of ``install-service`` and ``uninstall-service``.

The one call into the operating system is ``run``, ``(argv) -> exit status``, by default
:func:`run_command` (``subprocess.run``). Tests substitute it, and ``sleep``: launchctl
cannot run here, and the decisions around it (what runs in what order, which failures
are fine, what is retried) are the plan's and this module's, not launchctl's.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from menda_keyring.errors import ConfigError
from menda_keyring.fileutil import write_private_file_atomically
from menda_keyring.private_dir import (
    NOT_WRITABLE,
    NotPrivateError,
    check_private_dir,
    make_private_dirs,
)

from .service import Action, MakeFolder, Plan, RemoveFile, Step, WriteFile

#: Seconds one command may take: ``launchctl bootout`` waits for the daemon to exit
#: (launchd's ExitTimeOut is 20 s), ``systemctl --now`` for the unit to start.
COMMAND_TIMEOUT = 60.0

Run = Callable[[Sequence[str]], int]
Sleep = Callable[[float], None]

#: The pause between tries, looked up when ``cli`` runs a plan (a test may replace it).
pause: Sleep = time.sleep


def run_command(argv: Sequence[str], quiet: bool = False) -> int:
    """Run ``argv`` without input and return its exit status.

    Its messages reach the terminal (systemctl and launchctl say why they failed) unless
    ``quiet`` (``launchctl print`` for ``status``, whose text is no API and not shown).
    Raises ``FileNotFoundError`` when the program is missing, ``subprocess.TimeoutExpired``
    after :data:`COMMAND_TIMEOUT`.
    """
    out = subprocess.DEVNULL if quiet else None
    result = subprocess.run(
        list(argv),
        stdin=subprocess.DEVNULL,
        stdout=out,
        stderr=out,
        timeout=COMMAND_TIMEOUT,
        check=False,
    )
    return result.returncode


def install_file(path: Path, content: bytes) -> None:
    """Write a service file 0600 (whatever the umask) into a folder others cannot write.

    Missing folders are created 0700. A unit or plist in a folder another user can write
    could be replaced by that user (``ExecStart=``): such a folder is refused.
    """
    try:
        make_private_dirs(path.parent)
        check_private_dir(path.parent, forbidden=NOT_WRITABLE)
    except NotPrivateError as exc:
        raise ConfigError(f"{exc}; not installing {path.name} there") from None
    except OSError as exc:
        raise ConfigError(f"cannot create {exc.filename or path.parent}: {exc.strerror}") from None
    write_private_file_atomically(path, content)


def run_plan(
    plan: Plan, dry_run: bool = False, run: Run = run_command, sleep: Sleep = time.sleep
) -> int:
    """Do ``plan`` (or, ``dry_run``, print what it would do): 0 when done, 1 when a
    must-succeed action failed (said on stderr, naming it)."""
    failed = False
    for action in plan.actions:
        if failed and not plan.keep_going:
            break
        if dry_run:
            _describe(action)
        elif not _do(action, run, sleep):
            failed = True
    for note in plan.notes:
        print(f"# {note}" if dry_run else note)
    return 1 if failed else 0


def _describe(action: Action) -> None:
    if isinstance(action, MakeFolder):
        print(f"# would create {action.path} (mode 0700) if missing: {action.why}")
    elif isinstance(action, WriteFile):
        print(f"# would write {action.path}")
        print(action.content.decode())
    elif isinstance(action, Step):
        mark = "may fail: " if action.may_fail else ""
        print(f"# would run: {shlex.join(action.argv)}  # {mark}{action.why}")
    else:
        print(f"# would remove {action.path}")


def _do(action: Action, run: Run, sleep: Sleep) -> bool:
    """Carry out one action; False when it failed and that counts."""
    if isinstance(action, MakeFolder):
        try:
            make_private_dirs(action.path)
        except OSError as exc:
            reason = exc.strerror or str(exc)
            _error(f"cannot create {action.path} ({action.why}): {reason}")
            return False
        return True
    if isinstance(action, WriteFile):
        try:
            install_file(action.path, action.content)
        except (ConfigError, OSError) as exc:
            _error(str(exc))
            return False
        print(f"wrote {action.path}")
        return True
    if isinstance(action, RemoveFile):
        try:
            action.path.unlink()
        except FileNotFoundError:
            return True
        except OSError as exc:
            _error(f"cannot remove {action.path}: {exc.strerror}")
            return False
        print(f"removed {action.path}")
        return True
    return _run_step(action, run, sleep)


def _run_step(step: Step, run: Run, sleep: Sleep) -> bool:
    command = shlex.join(step.argv)
    pauses = list(step.pauses)
    tries = 0
    while True:
        print(f"+ {command}")
        tries += 1
        try:
            status = run(step.argv)
        except FileNotFoundError:
            # Whatever the step: without the program no later step can work either.
            _error(f"{step.argv[0]} not found; {command} not run")
            return False
        except subprocess.TimeoutExpired as exc:
            status = None
            reason = f"did not finish within {exc.timeout:.0f} s"
        else:
            if status == 0:
                return True
            reason = f"exit status {status}"
        if status is not None and status == step.retry_status and pauses:
            pause = pauses.pop(0)
            print(f"  {reason}: tried again in {pause:g} s")
            sleep(pause)
            continue
        if step.may_fail:
            print(f"  {reason}: {step.why}")
            return True
        after = f" after {tries} tries" if tries > 1 else ""
        hint = f"; {step.hint.format(status=status)}" if step.hint and status is not None else ""
        _error(f"{command} failed ({reason}{after}){hint}")
        return False


def _error(message: str) -> None:
    print(f"menda-credd: {message}", file=sys.stderr)
