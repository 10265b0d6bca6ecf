"""What Linux's ``/proc`` says about a process: its state, owner and command.

Standard library only. Where there is no ``/proc`` (macOS) every question answers
"unknown" (None or False), and callers rely on what the socket's kernel peer
credentials say instead.
"""

from __future__ import annotations

import os


def _state_of(stat_line: bytes) -> bytes:
    """The state letter of a ``/proc/<pid>/stat`` line (the command may contain ``)``)."""
    fields = stat_line.rpartition(b")")[2].split()
    return fields[0] if fields else b""


def waiting_for_cpu(pid: int | None) -> bool:
    """True when a thread of ``pid`` is runnable (state R): silent because starved.

    Every thread counts: the event loop may be waiting for the GIL held by a worker
    thread that is itself waiting for a CPU. A stopped (T) or dead process, one whose
    threads all sleep, or one we cannot see, is not waited for.
    """
    if pid is None:
        return False
    try:
        threads = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return False
    for tid in threads:
        try:
            with open(f"/proc/{pid}/task/{tid}/stat", "rb") as stat_file:
                if _state_of(stat_file.read()) == b"R":
                    return True
        except OSError:
            continue
    return False


def pid_alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie (exited, not yet reaped)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return _state_of(fh.read()) != b"Z"
    except OSError:
        return True


def has_proc() -> bool:
    return os.path.isdir("/proc/self")


def process_owner(pid: int) -> int | None:
    """The uid that owns ``/proc/<pid>`` (the process's real owner), None when unknown."""
    try:
        return os.stat(f"/proc/{pid}").st_uid
    except OSError:
        return None


def command_line(pid: int) -> list[str] | None:
    """The argv of ``pid`` from ``/proc/<pid>/cmdline``, None when unknown."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            raw = fh.read()
    except OSError:
        return None
    return [os.fsdecode(part) for part in raw.split(b"\0") if part]
