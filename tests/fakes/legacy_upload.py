"""The legacy upload API (what ``twine upload`` and ``uv publish`` send), parsed without I/O.

One ``multipart/form-data`` POST per file: ``:action=file_upload``, ``protocol_version=1``,
the metadata fields (``name``, ``version``, ...), an optional ``sha256_digest`` and the
file itself as ``content``. :func:`parse_upload` turns a body into an :class:`Upload`
or raises :class:`BadUpload` with the reason the fake answers 400 with.
"""

from __future__ import annotations

import email.parser
import email.policy
import hashlib
import re
from dataclasses import dataclass, field

from tests.fakes.wheels import normalize

_SAFE_FILENAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*\.(?:whl|tar\.gz|zip)")


class BadUpload(ValueError):
    """The request is not a valid legacy upload; the message says why."""


@dataclass(frozen=True)
class Upload:
    name: str
    version: str
    filename: str
    content: bytes = field(repr=False)


def _fields(content_type: str, body: bytes) -> dict[str, tuple[str | None, bytes]]:
    """``{field name: (file name or None, bytes)}`` of a multipart/form-data body."""
    if not content_type.lower().startswith("multipart/form-data"):
        raise BadUpload(f"expected multipart/form-data, got {content_type or 'nothing'}")
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode()
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    if not message.is_multipart():
        raise BadUpload("the multipart body could not be parsed")
    fields: dict[str, tuple[str | None, bytes]] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            continue
        payload = part.get_payload(decode=True)
        fields[name] = (part.get_filename(), payload if isinstance(payload, bytes) else b"")
    return fields


def parse_upload(content_type: str, body: bytes) -> Upload:
    fields = _fields(content_type, body)

    def text(name: str) -> str:
        return fields.get(name, (None, b""))[1].decode("utf-8", "replace").strip()

    if text(":action") != "file_upload":
        raise BadUpload(f"unsupported :action {text(':action')!r}")
    name, version = text("name"), text("version")
    if not name or not version:
        raise BadUpload("name and version are required")
    filename, content = fields.get("content", (None, b""))
    if not filename or not _SAFE_FILENAME.fullmatch(filename):
        raise BadUpload(f"bad or missing file name {filename!r}")
    if not content:
        raise BadUpload("the file is empty")
    stem = filename.split("-", 1)[0]
    if normalize(stem) != normalize(name):
        raise BadUpload(f"file {filename} is not of project {name}")
    digest = text("sha256_digest")
    if digest and digest.lower() != hashlib.sha256(content).hexdigest():
        raise BadUpload("sha256_digest does not match the file")
    return Upload(name, version, filename, content)
