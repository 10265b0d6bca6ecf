"""Which certificates menda-cloud's TLS is verified against: the system's, or the ones named.

``SSL_CERT_FILE`` or ``SSL_CERT_DIR`` set: exactly what they name (OpenSSL reads them in
``ssl.create_default_context``), an explicit choice that wins, as it did before.
Otherwise the operating system's trust store through ``truststore``, as pip does: the
Security framework's keychains on macOS, the certificate store on Windows (where the
roots of corporate TLS-inspecting proxies live, and which python.org's macOS builds
and uv-managed Pythons do not read through OpenSSL), and OpenSSL's default paths, that
is the distribution's bundle, on Linux. Verification is always on.

Imported on the network path only (``truststore`` costs about 10 ms), never by the
backend at keyring's start-up; both transports (``http_sync``, and the daemon's
``http_async``) take their context from here.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping

#: The variables that make OpenSSL's default paths, and so our trust, the ones they name.
OVERRIDES = ("SSL_CERT_FILE", "SSL_CERT_DIR")


def trust_source(env: Mapping[str, str]) -> str:
    """``"environment"`` when the user names the certificates, else ``"system"``."""
    return "environment" if any(env.get(name) for name in OVERRIDES) else "system"


def client_context(env: Mapping[str, str]) -> ssl.SSLContext:
    """A verifying client context for menda-cloud (hostname checked, certificate required)."""
    if trust_source(env) == "environment":
        return ssl.create_default_context()
    import truststore

    context: ssl.SSLContext = truststore.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context
