"""The ``menda-credd`` command's first step: refuse at once where the daemon cannot run.

Nothing of the daemon is imported before the check: on Windows its modules do not
import at all (no Unix sockets, no ``resource``, and ``aiohttp``/``anyio`` are not
installed there), and menda-keyring resolves in process instead.
"""

from __future__ import annotations

import sys

#: ``menda-credd`` where the daemon cannot run: a usage-level refusal, as argparse's.
UNSUPPORTED_STATUS = 2


def main(argv: list[str] | None = None) -> int:
    from menda_keyring.osfeatures import daemon_unsupported

    reason = daemon_unsupported()
    if reason is not None:
        print(
            f"menda-credd: the daemon runs on Linux and macOS only ({reason}); "
            "menda-keyring resolves tokens in process here",
            file=sys.stderr,
        )
        return UNSUPPORTED_STATUS
    from .cli import main as cli_main

    return cli_main(argv)
