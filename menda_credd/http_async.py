"""Send a protocol request with aiohttp: the daemon's twin of ``menda_keyring.http_sync``.

Same semantics: no redirects, no answer at all is a TransientError, a TLS
verification failure is a MendaCloudAPIError (not worth retrying), the TLS context
honours ``SSL_CERT_FILE``/``SSL_CERT_DIR`` and proxies come from the usual
environment variables (``HTTPS_PROXY``, ``NO_PROXY``, ...) except for loopback hosts,
which are never proxied. One ClientSession serves the daemon's whole life.
"""

from __future__ import annotations

import asyncio
import ssl
from urllib.parse import urlsplit

import aiohttp
from aiohttp.helpers import get_env_proxy_for_url
from yarl import URL

from menda_keyring.cloud_protocol import MAX_BODY, HttpRequest, HttpResponse, TransientError
from menda_keyring.errors import MendaCloudAPIError
from menda_keyring.identity import is_loopback_host


class AsyncSender:
    """Owns the ClientSession; ``await sender.send(request, timeout)``."""

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            context = ssl.create_default_context()
            connector = aiohttp.TCPConnector(ssl=context, limit=16, ttl_dns_cache=60)
            # Proxies are looked up per request below (as trust_env=True would), so that
            # loopback is never proxied and no ~/.netrc credentials are ever attached.
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

    async def send(self, request: HttpRequest, timeout: float) -> HttpResponse:
        timeout = max(timeout, 0.05)
        hostname = urlsplit(request.url).hostname or ""
        where = f"menda-cloud {request.url}"
        proxy = None
        if not is_loopback_host(hostname):
            try:
                proxy, _auth = get_env_proxy_for_url(URL(request.url))
            except LookupError:
                proxy = None
        session = self._get_session()
        try:
            async with session.request(
                request.method,
                request.url,
                data=request.body,
                headers=dict(request.headers),
                allow_redirects=False,
                proxy=proxy,
                timeout=aiohttp.ClientTimeout(total=timeout),
            ) as answer:
                body = await answer.content.read(MAX_BODY)
                headers = {k.lower(): v for k, v in answer.headers.items()}
                return HttpResponse(answer.status, headers, body)
        except aiohttp.ClientConnectorCertificateError as exc:
            error = exc.certificate_error
            detail = getattr(error, "verify_message", None) or str(error)
            raise MendaCloudAPIError(
                f"{where}: TLS certificate verification failed ({detail}); "
                "check SSL_CERT_FILE or the system trust store"
            ) from None
        except aiohttp.ClientSSLError as exc:
            raise TransientError(f"{where}: TLS error ({exc})") from None
        except (asyncio.TimeoutError, TimeoutError):
            raise TransientError(f"{where}: no answer within {timeout:.1f} s") from None
        except aiohttp.ClientConnectorError as exc:
            text = exc.strerror or str(exc.os_error) or "connection failed"
            raise TransientError(f"{where}: cannot connect ({text})") from None
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            raise TransientError(f"{where}: connection failed ({type(exc).__name__})") from None
