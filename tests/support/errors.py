"""The one parser of the typed errors the keyring CLI reports on stderr."""

from __future__ import annotations

CLI_PREFIX = "menda-keyring: "
#: Where our error classes live when a traceback names them by module.
MODULE_PREFIXES = ("menda_keyring.", "menda.error.")


def error_line(stderr: str) -> str:
    """The last non-empty line of stderr (of a traceback: ``module.Class: message``)."""
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""


def typed_error(stderr: str) -> tuple[str, str]:
    """``(class name, message)`` of the error the keyring CLI reported, or ``("", line)``.

    Under the keyring CLI the backend prints ``menda-keyring: Class: message``; a
    traceback ends in ``menda_keyring.errors.Class: message``.
    """
    line = error_line(stderr)
    if line.startswith(CLI_PREFIX):
        head, _, message = line[len(CLI_PREFIX) :].partition(": ")
        return head, message
    if line.startswith(MODULE_PREFIXES):
        head, _, message = line.partition(": ")
        return head.rsplit(".", 1)[-1], message
    return "", line


def error_class(stderr: str) -> str:
    """The bare class name of the error the keyring CLI reported ("" when none)."""
    return typed_error(stderr)[0]
