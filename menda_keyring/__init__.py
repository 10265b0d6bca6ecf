"""menda-keyring: short-lived AWS CodeArtifact tokens from menda-cloud for keyring, uv and pip.

Kept empty on purpose: ``keyring`` imports this package at every start-up.
"""

#: The one place the version is written: setuptools reads it (pyproject), menda_credd imports it.
__version__ = "0.4.0"
