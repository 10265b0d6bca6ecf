"""Build tiny, valid, pure-Python wheels for the fake index (no build backend needed)."""

from __future__ import annotations

import base64
import hashlib
import re
import zipfile
from pathlib import Path

GREETING = "hello from the private index"
_FIXED_DATE = (2020, 1, 1, 0, 0, 0)  # reproducible archives: same bytes, same sha256


def normalize(name: str) -> str:
    """PEP 503 project-name normalization (``Menda_Hello`` -> ``menda-hello``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _record_hash(data: bytes) -> str:
    digest = hashlib.sha256(data).digest()
    return "sha256=" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def build_wheel(
    dist_dir: str | Path,
    name: str = "menda-hello",
    version: str = "0.1.0",
    greeting: str = GREETING,
) -> Path:
    """Write ``{name}-{version}-py3-none-any.whl`` into ``dist_dir`` and return its path.

    The wheel holds one package (the name with ``-`` -> ``_``) whose ``__init__`` defines
    ``GREETING`` and ``__version__``, plus METADATA 2.1, WHEEL and a correct RECORD.
    """
    dist = Path(dist_dir)
    dist.mkdir(parents=True, exist_ok=True)
    stem = normalize(name).replace("-", "_")
    dist_info = f"{stem}-{version}.dist-info"
    files: list[tuple[str, bytes]] = [
        (
            f"{stem}/__init__.py",
            f'"""Demo package served by the fake CodeArtifact index."""\n\n'
            f"GREETING = {greeting!r}\n__version__ = {version!r}\n".encode(),
        ),
        (
            f"{dist_info}/METADATA",
            (
                "Metadata-Version: 2.1\n"
                f"Name: {name}\n"
                f"Version: {version}\n"
                "Summary: Demo package for the menda-keyring end-to-end tests\n"
                "Requires-Python: >=3.8\n"
                "\n"
            ).encode(),
        ),
        (
            f"{dist_info}/WHEEL",
            (
                b"Wheel-Version: 1.0\n"
                b"Generator: menda-fakes (0.1)\n"
                b"Root-Is-Purelib: true\n"
                b"Tag: py3-none-any\n"
                b"\n"
            ),
        ),
    ]
    record_name = f"{dist_info}/RECORD"
    record = "".join(f"{arc},{_record_hash(data)},{len(data)}\n" for arc, data in files)
    record += f"{record_name},,\n"
    files.append((record_name, record.encode()))
    path = dist / f"{stem}-{version}-py3-none-any.whl"
    tmp = path.with_suffix(".whl.tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for arc, data in files:
            info = zipfile.ZipInfo(arc, date_time=_FIXED_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, data)
    tmp.replace(path)
    return path


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file (for ``#sha256=`` index fragments)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
