"""Send a menda-cloud request with aiohttp: the daemon's transport.

The same semantics as :mod:`menda_keyring.http_sync`, and the same messages (from
:mod:`menda_keyring.cloud_protocol`): no redirects, no answer at all is a
TransientError, a TLS verification failure is not worth retrying, the TLS context
comes from :mod:`menda_keyring.tls` (the system's trust store, or ``SSL_CERT_FILE`` /
``SSL_CERT_DIR`` when set), and proxies come from the usual
environment variables (``HTTPS_PROXY``, ``NO_PROXY``, ...) except for loopback hosts,
which are never proxied. One ClientSession serves the daemon's whole life.
"""

from __future__ import annotations

import asyncio
import os
import urllib.request
from urllib.parse import urlsplit

import aiohttp

from menda_keyring import cloud_protocol as cloud
from menda_keyring.identity import is_loopback_host
from menda_keyring.tls import client_context


def proxy_for(url: str) -> str | None:
    """The proxy the environment names for ``url`` (as urllib would pick it), or None."""
    parts = urlsplit(url)
    hostname = parts.hostname or ""
    if is_loopback_host(hostname):
        return None
    proxies = urllib.request.getproxies()
    if urllib.request.proxy_bypass(parts.netloc or hostname):
        return None
    return proxies.get(parts.scheme) or None


class AsyncSender:
    """Owns the ClientSession; ``await sender.send(request, timeout)``."""

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            context = client_context(os.environ)
            connector = aiohttp.TCPConnector(ssl=context, limit=16, ttl_dns_cache=60)
            # Proxies are picked per request (proxy_for), so that loopback is never proxied
            # and no ~/.netrc credentials are ever attached (trust_env would do both).
            self._session = aiohttp.ClientSession(
                connector=connector,
                trust_env=False,
                cookie_jar=aiohttp.DummyCookieJar(),
                auto_decompress=True,
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()

    async def send(self, request: cloud.HttpRequest, timeout: float) -> cloud.HttpResponse:
        timeout = max(timeout, 0.05)
        session = self._get_session()
        try:
            async with session.request(
                request.method,
                request.url,
                data=request.body,
                headers=dict(request.headers),
                allow_redirects=False,
                proxy=proxy_for(request.url),
                timeout=aiohttp.ClientTimeout(total=timeout),
            ) as answer:
                body = await answer.content.read(cloud.MAX_BODY)
                headers = {k.lower(): v for k, v in answer.headers.items()}
                return cloud.HttpResponse(answer.status, headers, body)
        except aiohttp.ClientConnectorCertificateError as exc:
            error = exc.certificate_error
            detail = getattr(error, "verify_message", None) or str(error)
            raise cloud.tls_verification_failed(request, detail) from None
        except aiohttp.ClientSSLError as exc:
            raise cloud.tls_error(request, exc) from None
        except (asyncio.TimeoutError, TimeoutError):
            raise cloud.no_answer(request, timeout) from None
        except aiohttp.ClientConnectorError as exc:
            raise cloud.cannot_connect(
                request, exc.strerror or str(exc.os_error) or "connection failed"
            ) from None
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            raise cloud.connection_failed(request, exc) from None
