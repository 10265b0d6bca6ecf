"""menda-credd: the per-user credential daemon behind the menda-keyring shim.

It speaks the wire protocol of :mod:`menda_keyring.daemon_protocol` on a private Unix socket,
keeps CodeArtifact tokens in memory only, single-flights exchanges with
menda-cloud and refreshes tokens in use before they expire.
"""

from menda_keyring import __version__

__all__ = ["__version__"]
