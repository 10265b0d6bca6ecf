"""``menda-keyring``: the chain checked link by link, and credentials without a keyring.

Never imported by the keyring backend: only the console script loads it. Each subcommand
lives in a module of its own that exposes ``add_arguments(parser)`` and ``run(args) -> int``;
this module only dispatches, so that ``menda-keyring token`` imports nothing of ``doctor``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from types import ModuleType

from .. import __version__

#: Subcommand name -> (module under menda_keyring.cli, one-line help).
COMMANDS: dict[str, tuple[str, str]] = {
    "doctor": ("doctor", "check every link from keyring to CodeArtifact, one line each"),
    "token": ("token", "print the CodeArtifact token for URL on stdout"),
    "exec": ("exec_command", "run a command with index credentials in its environment"),
}


def build_parser(name: str | None = None) -> argparse.ArgumentParser:
    """The whole parser, or only ``name``'s subparser filled in (the others stay bare)."""
    parser = argparse.ArgumentParser(
        prog="menda-keyring",
        description="CodeArtifact credentials from menda-cloud, for keyring users and for CI.",
    )
    parser.add_argument("--version", action="version", version=f"menda-keyring {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for command, (module, help_text) in COMMANDS.items():
        sub_parser = sub.add_parser(command, help=help_text, description=help_text)
        if name is None or name == command:
            _module(module).add_arguments(sub_parser)
    return parser


def _module(name: str) -> ModuleType:
    return importlib.import_module(f"{__name__}.{name}")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit status."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    chosen = next((a for a in args_list if not a.startswith("-")), None)
    parser = build_parser(chosen if chosen in COMMANDS else None)
    args = parser.parse_args(args_list)
    module, _ = COMMANDS[args.command]
    status: int = _module(module).run(args)
    return status


if __name__ == "__main__":
    raise SystemExit(main())
