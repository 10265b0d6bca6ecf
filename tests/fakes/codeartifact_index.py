"""Fake AWS CodeArtifact PyPI repository: a PEP 503 simple index behind HTTP Basic auth.

Paths (any repository name works)::

    /pypi/<repo>/simple/                              project list
    /pypi/<repo>/simple/<project>/                    links with #sha256= fragments
    /pypi/<repo>/simple/<project>/<version>/<file>    the distribution file

and the VPC-endpoint form ``/pypi/d/<domain>-<owner>/<repo>/simple/...``. Uploads use the
legacy API at the repository's own URL, as ``twine upload`` and ``uv publish`` send them::

    POST /pypi/<repo>/                                multipart/form-data, :action=file_upload

and land in ``dist_dir``, so the simple index serves them at once. Every request needs
``Authorization: Basic aws:<token>`` where ``token_validator(token, domain)`` is true; the
domain comes from the ``Host`` header (``<domain>-<owner>.d.codeartifact.<region>...``), the
VPC path, or else the index's own ``domain``.
"""

from __future__ import annotations

import base64
import binascii
import html
import re
import tempfile
import threading
import urllib.parse
from collections.abc import Callable
from pathlib import Path

from tests.fakes._server import QuietHandler, QuietHTTPServer, ServerRunner
from tests.fakes.legacy_upload import BadUpload, parse_upload
from tests.fakes.menda_cloud import DEFAULT_DOMAIN, DEFAULT_OWNER
from tests.fakes.wheels import build_wheel, normalize, sha256_file

TokenValidator = Callable[[str, str], bool]

_HOST_RE = re.compile(
    r"^(?P<domain>[a-z][a-z0-9-]{0,48}[a-z0-9])-(?P<owner>\d{12})"
    r"\.d\.codeartifact\.(?P<region>[a-z0-9-]+)\.amazonaws\.com$"
)
_REALM = 'Basic realm="codeartifact"'


def _dist_name_version(filename: str) -> tuple[str, str] | None:
    """(project, version) from a wheel or sdist filename, else None."""
    if filename.endswith(".whl"):
        parts = filename[: -len(".whl")].split("-")
        return (parts[0], parts[1]) if len(parts) >= 5 else None
    for ext in (".tar.gz", ".zip"):
        if filename.endswith(ext):
            name, sep, version = filename[: -len(ext)].rpartition("-")
            return (name, version) if sep else None
    return None


class FakeCodeArtifactIndex(ServerRunner):
    """Serves the wheels in ``dist_dir`` as a CodeArtifact PyPI repository.

    ``start()`` also listens on plain ``http://127.0.0.1:PORT`` (``url``) for direct tests;
    :attr:`handler_class` serves the same index over any socket (the HTTPS proxy uses it).
    Without ``dist_dir`` a temp dir holding ``menda-hello 0.1.0`` is created.
    """

    #: requests with and without a valid token, file GETs, files stored by upload
    COUNTERS = ("authorized", "unauthorized", "downloads", "uploads")
    #: The largest upload accepted.
    MAX_UPLOAD = 16 << 20

    def __init__(
        self,
        token_validator: TokenValidator,
        *,
        dist_dir: str | Path | None = None,
        domain: str = DEFAULT_DOMAIN,
        owner: str = DEFAULT_OWNER,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        super().__init__()
        self.token_validator = token_validator
        self.domain = domain
        self.owner = owner
        self.host = host
        self._bind_port = port
        if dist_dir is None:
            self._tmp = tempfile.mkdtemp(prefix="menda-fake-index-")
            dist_dir = self._tmp
            build_wheel(dist_dir)
        self.dist_dir = Path(dist_dir)
        self.lock = threading.Lock()  # guards _hashes and uploads into dist_dir
        self._hashes: dict[tuple[str, float, int], str] = {}
        self.handler_class: type[QuietHandler] = type(
            "IndexHandler", (_IndexHandler,), {"index": self}
        )

    def _make_server(self) -> QuietHTTPServer:
        return QuietHTTPServer((self.host, self._bind_port), self.handler_class)

    @property
    def url(self) -> str:
        """Plain-HTTP loopback base URL of the direct listener."""
        return f"http://{self.host}:{self.port}"

    def simple_url(self, repo: str = "menda-plugins") -> str:
        """Direct (plain-HTTP) simple-index URL of ``repo``."""
        return f"{self.url}/pypi/{repo}/simple/"

    # -- content -------------------------------------------------------------------------

    def projects(self) -> dict[str, list[tuple[str, str, Path]]]:
        """``{normalized project: [(version, filename, path), ...]}`` from ``dist_dir``."""
        out: dict[str, list[tuple[str, str, Path]]] = {}
        if not self.dist_dir.is_dir():
            return out
        for path in sorted(self.dist_dir.iterdir()):
            parsed = _dist_name_version(path.name)
            if parsed is None or not path.is_file():
                continue
            out.setdefault(normalize(parsed[0]), []).append((parsed[1], path.name, path))
        return out

    def sha256(self, path: Path) -> str:
        """Cached hex sha256 of a distribution file."""
        st = path.stat()
        key = (str(path), st.st_mtime, st.st_size)
        with self.lock:
            digest = self._hashes.get(key)
        if digest is None:
            digest = sha256_file(path)
            with self.lock:
                self._hashes[key] = digest
        return digest


class _IndexHandler(QuietHandler):
    """Serves one :class:`FakeCodeArtifactIndex` (bound as the ``index`` class attribute)."""

    index: FakeCodeArtifactIndex

    def do_GET(self) -> None:
        self._serve(head_only=False)

    def do_HEAD(self) -> None:
        self._serve(head_only=True)

    def do_POST(self) -> None:
        """The legacy upload API at ``/pypi/<repo>/`` (or ``/pypi/d/<domain>-<owner>/<repo>/``)."""
        length = int(self.headers.get("Content-Length") or 0)
        if length > self.index.MAX_UPLOAD:
            self.close_connection = True
            self._text(413, "upload too large\n")
            return
        body = self.read_body(self.index.MAX_UPLOAD)
        path = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path)
        parts = [p for p in path.split("/") if p]
        if not self._authorized(parts):
            return
        is_repo = (len(parts) == 2 and parts[0] == "pypi") or (
            len(parts) == 4 and parts[:2] == ["pypi", "d"]
        )
        if not is_repo:
            self._text(405, "uploads go to /pypi/<repo>/\n", {"Allow": "GET, HEAD"})
            return
        try:
            upload = parse_upload(self.headers.get("Content-Type", ""), body)
        except BadUpload as exc:
            self._text(400, f"Bad upload: {exc}\n")
            return
        with self.index.lock:
            target = self.index.dist_dir / upload.filename
            if target.exists():
                self._text(409, f"{upload.filename} already exists\n")
                return
            self.index.dist_dir.mkdir(parents=True, exist_ok=True)
            partial = target.with_name(target.name + ".part")
            partial.write_bytes(upload.content)
            partial.replace(target)
        self.index._count("uploads")
        self._text(200, f"stored {upload.filename}\n")

    def _text(self, status: int, text: str, headers: dict[str, str] | None = None) -> None:
        self.send_bytes(status, text.encode(), "text/plain; charset=utf-8", headers)

    def _request_domain(self, parts: list[str]) -> str:
        host = self.headers.get("Host", "").lower().rsplit(":", 1)[0].rstrip(".")
        match = _HOST_RE.match(host)
        if len(parts) > 2 and parts[1] == "d":
            return parts[2].rpartition("-")[0] or parts[2]
        return match.group("domain") if match else self.index.domain

    def _token(self) -> tuple[str | None, str]:
        """(token, why) from the Basic credentials; token None when unusable."""
        scheme, _, value = self.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "basic" or not value.strip():
            return None, "no Basic credentials"
        try:
            user, sep, password = (
                base64.b64decode(value.strip(), validate=True).decode().partition(":")
            )
        except (binascii.Error, UnicodeDecodeError):
            return None, "malformed Basic credentials"
        if not sep or user != "aws" or not password:
            return None, "user must be 'aws' with a token as password"
        return password, ""

    def _authorized(self, parts: list[str]) -> bool:
        """Whether the Basic ``aws:<token>`` credentials hold; else the answer is sent."""
        index = self.index
        domain = self._request_domain(parts)
        token, why = self._token()
        ok = False
        if token is not None:
            try:
                ok = bool(index.token_validator(token, domain))
            except Exception as exc:  # the validator is test plumbing: make failures loud
                self._text(500, f"token validator failed: {exc!r}\n")
                return False
            if not ok:
                why = f"token not valid for domain {domain}"
        if not ok:
            index._count("unauthorized")
            self._text(401, f"Unauthorized: {why}\n", {"WWW-Authenticate": _REALM})
            return False
        index._count("authorized")
        return True

    def _serve(self, head_only: bool) -> None:
        index = self.index
        path = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path)
        parts = [p for p in path.split("/") if p]
        if not self._authorized(parts):
            return

        if len(parts) > 3 and parts[0] == "pypi" and parts[1] == "d":
            rest = parts[4:]
        elif len(parts) > 1 and parts[0] == "pypi":
            rest = parts[2:]
        else:
            self._text(404, "Not Found\n")
            return
        if not rest or rest[0] != "simple" or len(rest) not in (1, 2, 4):
            self._text(404, "Not Found\n")
            return
        if len(rest) < 4 and not path.endswith("/"):
            query = urllib.parse.urlsplit(self.path).query
            location = urllib.parse.quote(path + "/") + (f"?{query}" if query else "")
            self.send_bytes(301, b"", None, {"Location": location}, head_only)
            return
        projects = index.projects()
        if len(rest) == 1:
            links = "".join(
                f'<a href="{html.escape(name)}/">{html.escape(name)}</a><br/>\n'
                for name in sorted(projects)
            )
            self._html("Simple index", links, head_only)
            return
        files = projects.get(normalize(rest[1]))
        if files is None:
            self._text(404, f"No project {rest[1]}\n")
            return
        if len(rest) == 2:
            links = "".join(
                f'<a href="{html.escape(version)}/{html.escape(fname)}'
                f'#sha256={index.sha256(fpath)}">{html.escape(fname)}</a><br/>\n'
                for version, fname, fpath in files
            )
            self._html(f"Links for {normalize(rest[1])}", links, head_only)
            return
        for version, fname, fpath in files:
            if version == rest[2] and fname == rest[3]:
                if not head_only:
                    index._count("downloads")
                data = fpath.read_bytes()
                self.send_bytes(200, data, "application/octet-stream", None, head_only)
                return
        self._text(404, f"No file {rest[2]}/{rest[3]}\n")

    def _html(self, title: str, links: str, head_only: bool) -> None:
        page = (
            "<!DOCTYPE html>\n<html><head>"
            '<meta name="pypi:repository-version" content="1.0">'
            f"<title>{html.escape(title)}</title></head>\n"
            f"<body><h1>{html.escape(title)}</h1>\n{links}</body></html>\n"
        )
        self.send_bytes(200, page.encode(), "text/html; charset=utf-8", None, head_only)
