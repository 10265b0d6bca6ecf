"""``menda-keyring token URL``: the CodeArtifact token for URL on stdout, for scripts.

For ``docker build --secret`` and anything else that wants the token without a keyring:
``TOKEN="$(menda-keyring token URL)"``. Errors are one line on stderr and exit status 1.
"""

from __future__ import annotations

import argparse
import os
import sys

from ..errors import MendaError, NotCodeArtifactError
from ..urls import parse_codeartifact_service
from .exec_env import bare_url
from .fetching import error_line, fetch_all


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "url",
        metavar="URL",
        help="a CodeArtifact index or repository URL (any repository of the domain will do)",
    )


def run(args: argparse.Namespace) -> int:
    """Print the token, or one error line; 0 or 1."""
    url: str = args.url
    try:
        target = parse_codeartifact_service(url)
        if target is None:
            raise NotCodeArtifactError(
                f"{bare_url(url)} is not a CodeArtifact URL "
                "(https://{domain}-{owner}.d.codeartifact.{region}.amazonaws.com/pypi/REPO/...)"
            )
        tokens, failures = fetch_all({target: bare_url(url)}, os.environ)
        if failures:
            raise failures[target]
    except MendaError as exc:
        print(error_line(exc), file=sys.stderr)
        return 1
    sys.stdout.write(tokens[target] + "\n")
    return 0
