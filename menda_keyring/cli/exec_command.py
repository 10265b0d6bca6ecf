"""``menda-keyring exec [--index [NAME=]URL]... [--keep-going] -- COMMAND [ARGS...]``.

Runs COMMAND with a token for every CodeArtifact index it would use in its environment
(see :mod:`.exec_env` for which variables), so CI jobs and image builds need no keyring.
Nothing is written to disk. The command replaces this process (``execvpe``), as ``env``
does: its exit status and every signal sent to the pid are its own, and exec costs only
its start-up and one token per domain. Exit 127 when COMMAND is not found, 126 when it
cannot be run, 1 when an index gets no token (before COMMAND runs; ``--keep-going`` warns
and runs it anyway).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from ..errors import MendaError
from .exec_env import carrier_problems, child_env, cli_indexes, describe, needs_of, targets_of
from .fetching import error_line, fetch_all
from .project_indexes import find_indexes

NOT_FOUND = 127
NOT_EXECUTABLE = 126
#: Python ignores these at start-up; a command must start with the default disposition.
_RESTORED_SIGNALS = ("SIGPIPE", "SIGXFSZ", "SIGXFZ")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--index",
        action="append",
        default=[],
        metavar="[NAME=]URL",
        help="one more CodeArtifact index: NAME sets UV_INDEX_<NAME>_*; an upload URL "
        "without NAME sets UV_PUBLISH_* and TWINE_*",
    )
    parser.add_argument(
        "--keep-going",
        action="store_true",
        help="run COMMAND even when an index gets no token (one warning line each)",
    )
    # Not "command": the dispatcher keeps the subcommand's name under that one.
    parser.add_argument("argv", nargs=argparse.REMAINDER, metavar="-- COMMAND [ARGS...]")


def run(args: argparse.Namespace) -> int:
    """Build the environment and replace this process with COMMAND; returns only on failure."""
    command: list[str] = list(args.argv)
    if command[:1] == ["--"]:
        command = command[1:]
    if not command:
        print(
            "menda-keyring exec: no COMMAND given (menda-keyring exec -- COMMAND)", file=sys.stderr
        )
        return 2
    try:
        env, problems = credentials_env(os.environ, Path.cwd(), args.index, args.keep_going)
    except MendaError as exc:
        print(error_line(exc), file=sys.stderr)
        return 1
    if problems and not args.keep_going:
        for problem in problems:
            print(f"menda-keyring: {problem}", file=sys.stderr)
        return 1
    for problem in problems:
        print(f"menda-keyring: warning (running the command anyway): {problem}", file=sys.stderr)
    return replace_process(command, env)


def credentials_env(
    env: Mapping[str, str], cwd: Path, index_options: Sequence[str], keep_going: bool
) -> tuple[dict[str, str], list[str]]:
    """COMMAND's environment and one line per index left without credentials.

    Without ``keep_going`` an index no variable can carry stops it before any token is
    fetched.
    """
    refs = find_indexes(cwd, env) + cli_indexes(index_options)
    needs = needs_of(refs)
    problems = carrier_problems(needs)
    if problems and not keep_going:
        return dict(env), problems
    tokens, failures = fetch_all(targets_of(needs), env)
    problems += [
        f"no token for {describe(need.ref)}: {type(exc).__name__}: {exc}"
        for need in needs
        if need.carrier is not None and (exc := failures.get(need.target)) is not None
    ]
    return child_env(env, refs, tokens), problems


def replace_process(command: Sequence[str], env: Mapping[str, str]) -> int:
    """``execvpe`` COMMAND; on failure one line and ``env``'s exit status (127 or 126)."""
    for name in _RESTORED_SIGNALS:
        number = getattr(signal, name, None)
        if number is not None:
            signal.signal(number, signal.SIG_DFL)
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execvpe(command[0], list(command), dict(env))  # noqa: S606 (no shell: argv as given)
    except FileNotFoundError:
        print(f"menda-keyring exec: {command[0]}: command not found", file=sys.stderr)
        return NOT_FOUND
    except OSError as exc:  # not executable, a folder, a bad interpreter line...
        print(f"menda-keyring exec: {command[0]}: {exc.strerror or exc}", file=sys.stderr)
        return NOT_EXECUTABLE
    raise AssertionError("execvpe returned")  # pragma: no cover
