"""Where things live: Menda's files in a home folder, and the daemon's socket, log and state.

Plain functions, standard library only (the socket rule runs at every ``keyring get``).

The socket, one rule shared by the daemon and the shim:

``MENDA_CREDD_SOCKET`` if set; else ``$XDG_RUNTIME_DIR/menda/credd.sock`` when
that runtime folder exists and belongs to us; else, on macOS, ``$TMPDIR/menda/credd.sock``
when ``$TMPDIR`` is a folder of ours closed to others (the per-user
``/var/folders/.../T/`` that launchd gives every login), or that same per-user folder
as ``confstr`` names it when ``TMPDIR`` is unset or unusable (ssh, launchd jobs);
else ``~/.menda/run/credd.sock``.
A path too long for ``sun_path`` falls back to a short path of ours (see
``fit_sun_path``).
"""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

#: Bytes of ``sockaddr_un.sun_path``, the NUL included: ``char sun_path[104]`` in macOS's
#: <sys/un.h>, ``char sun_path[108]`` in Linux's <sys/un.h> (``UNIX_PATH_MAX``).
SUN_PATH_BYTES = {"darwin": 104}
SOCKET_NAME = "credd.sock"


def sun_path_max(platform: str = sys.platform) -> int:
    return SUN_PATH_BYTES.get(platform, 108)


SUN_PATH_MAX = sun_path_max()


def menda_dir(home: Path) -> Path:
    return home / ".menda"


def config_path(home: Path) -> Path:
    return menda_dir(home) / "mendacfg"


def token_cache_path(home: Path) -> Path:
    return menda_dir(home) / "tokens" / "cache" / ".token"


def default_log_file(home: Path | None = None, platform: str = sys.platform) -> Path:
    """Where the daemon logs when not under systemd's journal.

    macOS: ``~/Library/Logs/menda-credd/credd.log`` (where Console.app looks; the launchd
    agent's plist names the same file). Elsewhere: ``~/.menda/run/credd.log``.
    """
    from pathlib import Path

    home = Path(os.path.expanduser("~")) if home is None else home
    if platform == "darwin":
        return home / "Library" / "Logs" / "menda-credd" / "credd.log"
    return home / ".menda" / "run" / "credd.log"


def prewarm_state_path(env: Mapping[str, str]) -> Path:
    """The daemon's pre-warm memory: ``$XDG_STATE_HOME/menda-credd/prewarm.json``.

    ``$XDG_STATE_HOME`` when it is an absolute path, else ``~/.local/state`` (the XDG
    default), in the daemon's own home. The folder is the daemon's alone (0700).
    """
    from pathlib import Path

    state = env.get("XDG_STATE_HOME", "")
    if not os.path.isabs(state):
        home = env.get("HOME") or os.path.expanduser("~")
        state = os.path.join(home, ".local", "state")
    return Path(state) / "menda-credd" / "prewarm.json"


def socket_path(
    env: Mapping[str, str], uid: int | None = None, platform: str = sys.platform
) -> str:
    uid = os.getuid() if uid is None else uid
    explicit = env.get("MENDA_CREDD_SOCKET")
    if explicit:
        return explicit
    runtime = per_user_dir(env, uid, platform)
    if runtime is not None:
        candidate = os.path.join(runtime, "menda", SOCKET_NAME)
    else:
        home = env.get("HOME") or os.path.expanduser("~")
        candidate = os.path.join(home, ".menda", "run", SOCKET_NAME)
    return fit_sun_path(candidate, uid, env, platform)


def per_user_dir(env: Mapping[str, str], uid: int, platform: str = sys.platform) -> str | None:
    """The system's per-user folder for the socket, or None (then the home folder's).

    ``$XDG_RUNTIME_DIR``; on macOS else ``$TMPDIR``, else the same per-user temporary
    folder as ``confstr`` names it (an ssh session or a launchd job has no ``TMPDIR``).
    """
    runtime = _runtime_dir(env, uid)
    if runtime is None and platform == "darwin":
        runtime = _private_dir_of_ours(env.get("TMPDIR"), uid)
        if runtime is None:
            runtime = _private_dir_of_ours(darwin_user_temp_dir(), uid)
    return runtime


def _runtime_dir(env: Mapping[str, str], uid: int) -> str | None:
    """``$XDG_RUNTIME_DIR`` when it is an absolute path to a folder that belongs to us."""
    runtime = env.get("XDG_RUNTIME_DIR")
    if not runtime or not os.path.isabs(runtime):
        return None
    try:
        st = os.lstat(runtime)
    except OSError:
        return None
    return runtime if stat.S_ISDIR(st.st_mode) and st.st_uid == uid else None


#: macOS <unistd.h>: ``#define _CS_DARWIN_USER_TEMP_DIR 65537`` (not in ``os.confstr_names``).
CS_DARWIN_USER_TEMP_DIR = 65537


def darwin_user_temp_dir() -> str | None:
    """macOS's per-user temporary folder, ``confstr(_CS_DARWIN_USER_TEMP_DIR)``: the folder
    ``TMPDIR`` names in a Terminal, also where no ``TMPDIR`` is set. None elsewhere."""
    try:
        return os.confstr(CS_DARWIN_USER_TEMP_DIR)
    except (ValueError, OSError, AttributeError):  # not macOS: no such name
        return None


def _private_dir_of_ours(folder: str | None, uid: int) -> str | None:
    """``folder`` when it is an absolute path to a folder of ours that others cannot enter.

    macOS gives each user ``/var/folders/<xx>/<hash>/T/`` (0700, theirs); a ``TMPDIR``
    pointing at ``/tmp`` or at a folder others can enter is not used.
    """
    if not folder or not os.path.isabs(folder):
        return None
    try:
        st = os.stat(folder)  # /var/folders is reached through the /private/var symlink
    except OSError:
        return None
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != uid or st.st_mode & 0o077:
        return None
    return os.path.normpath(folder)


def _fits(path: str, platform: str = sys.platform) -> bool:
    return len(os.fsencode(path)) < sun_path_max(platform)


def fit_sun_path(
    path: str, uid: int, env: Mapping[str, str] | None = None, platform: str = sys.platform
) -> str:
    """``path`` when it fits in ``sun_path``, else a short path of ours.

    First choice ``$XDG_RUNTIME_DIR/menda-credd.sock`` (a folder of ours the system made
    private); else ``/tmp/menda-credd-<uid>/credd.sock``, whose folder only the daemon
    creates (``mkdir`` 0700, verified after creation). A client never trusts that folder
    unless it is ours and closed to others; if another user made it first, no daemon
    serves there (the daemon refuses to start, clients resolve in process).
    """
    if _fits(path, platform):
        return path
    runtime = _runtime_dir(os.environ if env is None else env, uid)
    if runtime is not None:
        short = os.path.join(runtime, "menda-credd.sock")
        if _fits(short, platform):
            return short
    return f"/tmp/menda-credd-{uid}/{SOCKET_NAME}"  # noqa: S108 - folder is 0700 and checked
