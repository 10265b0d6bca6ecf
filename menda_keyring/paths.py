"""Where the daemon's socket lives: one rule, shared by the daemon and the shim.

``MENDA_CREDD_SOCKET`` if set; else ``$XDG_RUNTIME_DIR/menda/credd.sock`` when
that runtime folder exists and belongs to us; else ``~/.menda/run/credd.sock``.
A path too long for ``sun_path`` falls back to a short per-user path in /tmp.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping

#: Usable bytes of ``sockaddr_un.sun_path`` (the last one holds the NUL).
SUN_PATH_MAX = 104 if sys.platform == "darwin" else 108
SOCKET_NAME = "credd.sock"


def socket_path(env: Mapping[str, str], uid: int | None = None) -> str:
    uid = os.getuid() if uid is None else uid
    explicit = env.get("MENDA_CREDD_SOCKET")
    if explicit:
        return explicit
    runtime = env.get("XDG_RUNTIME_DIR")
    candidate = None
    if runtime and os.path.isabs(runtime):
        try:
            st = os.stat(runtime)
        except OSError:
            st = None
        if st is not None and st.st_uid == uid and os.path.isdir(runtime):
            candidate = os.path.join(runtime, "menda", SOCKET_NAME)
    if candidate is None:
        home = env.get("HOME") or os.path.expanduser("~")
        candidate = os.path.join(home, ".menda", "run", SOCKET_NAME)
    return fit_sun_path(candidate, uid)


def fit_sun_path(path: str, uid: int) -> str:
    """``path`` when it fits in ``sun_path``, else a short per-user path (uid in the name)."""
    if len(os.fsencode(path)) < SUN_PATH_MAX:
        return path
    return f"/tmp/menda-credd-{uid}/{SOCKET_NAME}"  # noqa: S108 - folder is 0700 and checked
