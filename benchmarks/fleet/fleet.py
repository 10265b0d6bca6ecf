"""A fleet of hosts on one event loop: their jobs, their daemons or in-process callers, tallies.

Every host boots once (all within ``boot_window`` seconds) and then runs jobs, one every
``job_interval`` on average (uniform between half and one and a half of it). A job asks
for a token for each of the fleet's CodeArtifact domains at once, as ``uv sync`` does
through ``keyring get``: through the host's daemon, or in process (a resolution flow per
``keyring get``, with the host's token cache and its lock shared by them).
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from menda_keyring.errors import MendaError, ResolutionTimeoutError
from menda_keyring.identity import resolve_identity
from menda_keyring.resolution import Resolution
from menda_keyring.retry import DEFAULT_CEILING, Deadline, RetryPolicy
from menda_keyring.tokens import RegistryToken
from menda_keyring.urls import RegistryTarget

from .cloud import CloudConfig, SimCloud
from .daemon import SimDaemon
from .flows import CACHE, Machine, Run
from .loop import EventLoop

#: 2026-12-01 09:00:00 UTC: the simulated fleet's second 0.
T0 = 1796115600.0
OWNER = "058264169513"
REGION = "eu-west-1"


@dataclass(frozen=True)
class FleetConfig:
    hosts: int = 10_000
    domains: int = 3
    daemon: bool = True
    boot_window: float = 60.0
    job_interval: float = 3600.0
    ceiling: float = DEFAULT_CEILING
    seed: int = 13
    cloud: CloudConfig = field(default_factory=CloudConfig)


class Fleet:
    """The hosts, the cloud and the clock, and what happened: calls and tokens per pair.

    A pair is one (host, domain), numbered ``host * domains + domain``.
    """

    def __init__(self, config: FleetConfig) -> None:
        self.config = config
        self.loop = EventLoop()
        self.t0 = T0
        self.cloud = SimCloud(config.cloud, T0)
        self.rng = random.Random(config.seed)
        self.rand = self.rng.random
        self.ceiling = config.ceiling
        self.policy = RetryPolicy()
        self.max_per_host = 2  # menda_credd.resolve_async.MAX_PER_HOST
        self.targets = [RegistryTarget(f"fleet-{d}", OWNER, REGION) for d in range(config.domains)]
        env = {
            "MENDA_CLIENT_ID": "fleet-ci",
            "MENDA_CLIENT_SECRET": "s3c",
            "MENDA_HOST": "https://api.fleet.menda.cloud",
        }
        self.identity = resolve_identity(env, Path("/sim"))
        pairs = config.hosts * config.domains
        self.calls = [0] * pairs  # registry calls per pair
        #: (time, host, pair) of every call while recording; pair -1: an OAuth call.
        self.call_log: list[tuple[float, int, int]] | None = None
        self.first_served: list[float | None] = [None] * pairs
        self.unserved = pairs
        self.servable_until = [0.0] * pairs
        self.gaps: list[tuple[float, float, int]] = []  # a pair without a servable token
        self.tallies: Counter[str] = Counter()
        self.daemons: list[SimDaemon] = []
        self.machines: list[Machine] = []
        for host in range(config.hosts):
            if config.daemon:
                self.daemons.append(SimDaemon(self, host, self.identity))
            else:
                machine = Machine(self.loop, self.cloud, None, self._oauth_call_of(host))
                self.machines.append(machine)

    # -- what the hosts report ---------------------------------------------------------------

    def tally(self, name: str, by: int = 1) -> None:
        self.tallies[name] += by

    @property
    def oauth_calls(self) -> int:
        return self.cloud.oauth_calls

    def registry_call(self, pair: int) -> None:
        self.calls[pair] += 1
        if self.call_log is not None:
            self.call_log.append((self.loop.now, pair // self.config.domains, pair))

    def oauth_call(self, host: int) -> None:
        if self.call_log is not None:
            self.call_log.append((self.loop.now, host, -1))

    def _oauth_call_of(self, host: int) -> Callable[[], None]:
        return lambda: self.oauth_call(host)

    def served(self, pair: int) -> None:
        if self.first_served[pair] is None:
            self.first_served[pair] = self.loop.now
            self.unserved -= 1

    def landed(self, pair: int, token: RegistryToken, wall: float) -> None:
        """A daemon now holds ``token`` for ``pair``: was the pair without one meanwhile?"""
        token_until = self.servable_until[pair]
        if 0 < token_until < wall:
            self.gaps.append((token_until - self.t0, wall - self.t0, pair))
        self.servable_until[pair] = token.expires_at - token.min_remaining()
        self.served(pair)

    # -- running ---------------------------------------------------------------------------

    def boot(self) -> None:
        for host in range(self.config.hosts):
            self.loop.at(self.rng.uniform(0, self.config.boot_window), self.job, host)

    def run(self, until: float) -> None:
        self.loop.run(until)

    def job(self, host: int) -> None:
        domains = self.config.domains
        daemon = self.daemons[host] if self.config.daemon else None
        for domain in range(domains):
            if daemon is None or not daemon.answer_from_memory(domain):
                self.ask(host, domain)
                continue
            self.tallies["requests"] += 1
            if self.cloud.in_outage(self.loop.now):
                self.tallies["requests_in_outage"] += 1
        interval = self.config.job_interval
        self.loop.after(interval * self.rng.uniform(0.5, 1.5), self.job, host)

    def ask(self, host: int, domain: int) -> None:
        pair = host * self.config.domains + domain
        in_outage = self.cloud.in_outage(self.loop.now)
        self.tally("requests")
        if in_outage:
            self.tally("requests_in_outage")

        def answer(ok: bool) -> None:
            if ok:
                self.served(pair)
                return
            self.tally("requests_failed")
            if in_outage:
                self.tally("requests_failed_in_outage")

        if self.config.daemon:
            self.daemons[host].request(domain, answer)
        else:
            self.in_process(host, domain, pair, answer)

    def in_process(self, host: int, domain: int, pair: int, answer: object) -> None:
        """One ``keyring get`` without a daemon: the in-process driver's flow and policy."""
        machine = self.machines[host]
        resolution = Resolution(
            self.identity,
            self.targets[domain],
            CACHE,
            Deadline(self.ceiling, clock=self.loop.clock),
            self.policy,
            machine.wall,
            self.rand,
        )

        def done(token: RegistryToken | None, error: MendaError | None) -> None:
            if error is not None:
                gave_up = isinstance(error, ResolutionTimeoutError) or (
                    run.sends < self.policy.max_attempts and "gave up" in error.message
                )
                self.tally("in_process_gave_up_at_ceiling" if gave_up else "in_process_failed")
            answer(token is not None)  # type: ignore[operator]

        run = Run(machine, resolution, done, lambda: self.registry_call(pair))
        run.start()
