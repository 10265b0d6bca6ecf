"""menda-cloud in the simulation: at most R registry exchanges a second, 429 beyond.

Registry exchanges (each one a CodeArtifact ``GetAuthorizationToken`` behind it, which AWS
limits per account and region) pass a token bucket of ``rate`` per second; a request
that finds it empty is answered 429 with ``Retry-After``, either reflecting the backlog
(the time until the capacity already promised to earlier refusals is used up, as a
well-behaved gateway computes it) or a constant. OAuth exchanges are menda-cloud's own
and not limited. During an outage every call is answered 503 without ``Retry-After``.
Answers are the contract's (docs/menda-cloud-api.md), built once and shared.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone

from menda_keyring.cloud_protocol import HttpRequest, HttpResponse

JSON = {"content-type": "application/json"}


@dataclass(frozen=True)
class CloudConfig:
    rate: float = 40.0
    #: The bucket holds this many (one second's worth at the default rate).
    burst: float = 40.0
    #: "backlog": Retry-After is the wait the queue of earlier refusals forces; "constant".
    retry_after: str = "backlog"
    constant_retry_after: int = 1
    #: (start, end) in simulated seconds: every call answered 503.
    outage: tuple[float, float] | None = None
    latency: float = 0.05
    registry_lifetime: int = 12 * 3600
    access_lifetime: int = 3600


def rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(int(ts), tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _json(status: int, obj: object, headers: dict[str, str] | None = None) -> HttpResponse:
    return HttpResponse(status, {**JSON, **(headers or {})}, json.dumps(obj).encode())


class SimCloud:
    """Answers each request at the moment it arrives; counts calls per simulated second."""

    def __init__(self, config: CloudConfig, t0: float) -> None:
        self.config = config
        self.t0 = t0  # wall-clock time of simulated second 0
        self._tokens = config.burst
        self._filled_at = 0.0
        self._promised = 0.0  # capacity promised to earlier 429s runs out here
        self.registry_per_second: Counter[int] = Counter()
        self.admitted_per_second: Counter[int] = Counter()
        self.oauth_calls = 0
        self.calls_in_outage = 0
        self._oauth_ok = _json(
            200,
            {
                "access_token": "mat_sim",
                "token_type": "Bearer",
                "expires_in": config.access_lifetime,
            },
        )
        self._down = _json(503, {"error": "service_unavailable", "message": "outage"})
        self._limited: dict[int, HttpResponse] = {}
        self._issued: dict[int, HttpResponse] = {}

    def in_outage(self, now: float) -> bool:
        out = self.config.outage
        return out is not None and out[0] <= now < out[1]

    def answer(self, request: HttpRequest, now: float) -> HttpResponse:
        if self.in_outage(now):
            self.calls_in_outage += 1
            if request.what == "oauth2/token":
                self.oauth_calls += 1
            else:
                self.registry_per_second[int(now)] += 1
            return self._down
        if request.what == "oauth2/token":
            self.oauth_calls += 1
            return self._oauth_ok
        second = int(now)
        self.registry_per_second[second] += 1
        rate = self.config.rate
        self._tokens = min(self.config.burst, self._tokens + (now - self._filled_at) * rate)
        self._filled_at = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            self.admitted_per_second[second] += 1
            return self._token(now)
        return self._refuse(now)

    def _refuse(self, now: float) -> HttpResponse:
        if self.config.retry_after == "constant":
            wait = self.config.constant_retry_after
        else:
            self._promised = max(self._promised, now) + 1.0 / self.config.rate
            wait = max(1, math.ceil(self._promised - now))
        answer = self._limited.get(wait)
        if answer is None:
            answer = self._limited[wait] = _json(
                429,
                {"error": "rate_limited", "message": "too many requests"},
                {"retry-after": str(wait)},
            )
        return answer

    def _token(self, now: float) -> HttpResponse:
        expires = math.floor(self.t0 + now) + self.config.registry_lifetime
        answer = self._issued.get(expires)
        if answer is None:
            self._issued.clear()  # one a second is all that is ever reused
            answer = self._issued[expires] = _json(
                200, {"token": "caat_sim", "expiration": rfc3339(expires), "username": "aws"}
            )
        return answer
