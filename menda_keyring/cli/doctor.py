"""`menda-keyring doctor`: placeholder until its issue lands."""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """No arguments yet."""


def run(args: argparse.Namespace) -> int:
    """Not built yet: says so and fails."""
    print("menda-keyring: this command is not built yet", file=sys.stderr)
    return 2
