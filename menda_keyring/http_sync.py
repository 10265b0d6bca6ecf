"""Send a menda-cloud request with the standard library, for in-process resolution.

urllib rather than aiohttp: ``keyring`` has already imported most of urllib's
modules, while aiohttp costs about 200 ms to import on every in-process call.
Proxies come from the usual environment variables, except for loopback hosts.
"""

from __future__ import annotations

import os
import socket
import ssl
import urllib.error
import urllib.request
from email.message import Message
from urllib.parse import urlsplit

from .cloud_protocol import (
    MAX_BODY,
    HttpRequest,
    HttpResponse,
    cannot_connect,
    connection_failed,
    no_answer,
    tls_error,
    tls_verification_failed,
)
from .identity import is_loopback_host

_openers: dict[tuple[bool, bool], urllib.request.OpenerDirector] = {}


def _opener(loopback: bool, https: bool) -> urllib.request.OpenerDirector:
    """One opener per kind of URL and process; TLS trust from :mod:`menda_keyring.tls`.

    A plain-http (loopback) menda-cloud never builds a TLS context: no redirect is ever
    followed, so its opener never meets an https URL.
    """
    key = (loopback, https)
    if key not in _openers:
        proxies: dict[str, str] | None = {} if loopback else None
        handlers: list[urllib.request.BaseHandler] = [
            urllib.request.ProxyHandler(proxies),
            _NoRedirect(),
        ]
        if https:
            from .tls import client_context

            handlers.append(urllib.request.HTTPSHandler(context=client_context(os.environ)))
        _openers[key] = urllib.request.build_opener(*handlers)
    return _openers[key]


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect is an answer to report, never a reason to send the secret elsewhere."""

    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


def send(request: HttpRequest, timeout: float) -> HttpResponse:
    """Send ``request``; a failure to get any answer is a TransientError with no status."""
    parts = urlsplit(request.url)
    opener = _opener(is_loopback_host(parts.hostname or ""), parts.scheme == "https")
    outgoing = urllib.request.Request(  # noqa: S310 - the URL is a checked http(s) host
        request.url, data=request.body, headers=dict(request.headers), method=request.method
    )
    try:
        with opener.open(outgoing, timeout=max(timeout, 0.05)) as answer:
            return HttpResponse(answer.status, _lower(answer.headers), answer.read(MAX_BODY))
    except urllib.error.HTTPError as answer:
        try:
            body = answer.read(MAX_BODY)
        except (OSError, ValueError):
            body = b""
        finally:
            answer.close()
        return HttpResponse(answer.code, _lower(answer.headers), body)
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, ssl.SSLCertVerificationError):
            raise tls_verification_failed(request, reason.verify_message) from None
        if isinstance(reason, (socket.timeout, TimeoutError)):
            raise no_answer(request, timeout) from None
        raise cannot_connect(request, getattr(reason, "strerror", None) or str(reason)) from None
    except TimeoutError:
        raise no_answer(request, timeout) from None
    except ssl.SSLError as exc:
        raise tls_error(request, exc.reason or exc) from None
    except (OSError, ValueError) as exc:
        raise connection_failed(request, exc) from None


def _lower(headers: Message) -> dict[str, str]:
    return {str(k).lower(): str(v) for k, v in headers.items()}
