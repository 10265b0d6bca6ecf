"""Pre-warm's memory: which (identity, domain) pairs were asked for, and when to warm them.

Plain objects without I/O and without a clock of their own (every call takes ``now``), so
that the rules can be tested exactly and a simulated week driven on a virtual clock:

- **What is remembered**: per (identity, CodeArtifact domain) pair, the time it was last
  asked for and the time of its first request on each of the last days. An identity is
  remembered by what identifies it without a secret (:class:`Subject`): a profile by its
  home folder and name (the daemon can resolve it again from ``mendacfg``); an identity of
  the environment trio by home, client id and host. The trio's secret cannot be stored, so
  such pairs are kept in memory only (with the identity of their last request) and are
  pre-warmed only while the daemon that saw them runs; they are never written.
- **Bounds**: at most ``max_records`` pairs (the least recently asked go first), each
  forgotten when not asked for ``max_age`` seconds; the first requests of at most
  ``MAX_DAYS`` days are kept.
- **When**: every remembered pair when the daemon starts; and on each day the pair is
  expected, ``lead`` seconds before the time of day its first request usually comes (the
  lower quartile of the recent first requests), unless it was asked for already that day.
  A day of the week on which it was not asked in the recent past is not expected.
"""

from __future__ import annotations

import datetime
import json
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from menda_keyring.urls import RegistryTarget

DAY = 86400.0
#: Pairs remembered at most.
MAX_RECORDS = 256
#: A pair not asked for this long is forgotten (two weeks: a holiday week does not erase it).
MAX_AGE = 14 * 86400.0
#: First requests kept per pair: one per day, for this many days.
MAX_DAYS = 14
#: How long before the expected first request a pair is pre-warmed.
LEAD = 20 * 60.0
#: An expected first request that passed this long ago (the daemon was asleep) is not
#: pre-warmed any more that day.
LATE = 3 * 3600.0
#: What the state file says it is; another format or version is not read.
FORMAT = "menda-credd-prewarm"
VERSION = 1
#: Longest string field accepted from the state file (host URLs are at most 512).
MAX_FIELD = 1024
#: Times in the state file are Unix times before this (the year 5138): anything beyond is
#: not a time this daemon wrote.
MAX_TIME = 1e11
#: ``MENDA_CREDD_PREWARM`` values that turn pre-warm off.
OFF_VALUES = frozenset({"0", "off", "false", "no"})


def enabled_by_env(env: Mapping[str, str]) -> bool:
    """``MENDA_CREDD_PREWARM=off`` (or 0, false, no) turns pre-warm off."""
    return env.get("MENDA_CREDD_PREWARM", "").strip().lower() not in OFF_VALUES


class Subject(NamedTuple):
    """What identifies an identity across restarts, without its secret.

    ``source`` "profile": ``name`` is the profile in ``home``'s ``mendacfg`` (``host`` is
    empty: the profile says which). ``source`` "env": ``name`` is the client id and
    ``host`` the menda-cloud host of the environment trio.
    """

    source: str
    home: str
    name: str
    host: str


Key = tuple[Subject, RegistryTarget]


@dataclass(eq=False)
class Record:
    """One remembered pair."""

    subject: Subject
    target: RegistryTarget
    label: str
    last_asked: float
    #: The first request of each recent day, oldest first.
    first_asks: list[float] = field(default_factory=list)
    #: When the day of the last first request ends (in memory: spares the calendar per request).
    day_ends: float = 0.0
    #: The last pre-warm that made an exchange (in memory, for ``status``).
    prewarmed_at: float | None = None
    #: The start of the last day whose expected first request was handled (in memory).
    handled_day: float | None = None
    #: For an environment-trio subject: the identity of its last request. In memory only
    #: (it carries the client secret); never written.
    held: Any = field(default=None, repr=False)

    @property
    def key(self) -> Key:
        return (self.subject, self.target)

    @property
    def durable(self) -> bool:
        """Whether the daemon can resolve this identity again after a restart."""
        return self.subject.source == "profile"


class Calendar:
    """Local days and times of day; ``tz`` None is the system's local time zone."""

    def __init__(self, tz: datetime.tzinfo | None = None) -> None:
        self.tz = tz

    def moment(self, ts: float) -> datetime.datetime:
        return datetime.datetime.fromtimestamp(ts, self.tz)

    def day_start(self, ts: float) -> float:
        return self._at(self.moment(ts).date(), datetime.time())

    def next_day_start(self, ts: float) -> float:
        return self._at(self.moment(ts).date() + datetime.timedelta(days=1), datetime.time())

    def time_of_day(self, ts: float) -> float:
        m = self.moment(ts)
        return m.hour * 3600 + m.minute * 60 + m.second + m.microsecond / 1e6

    def at(self, day: datetime.date, seconds: float) -> float:
        """The time ``seconds`` after midnight (wall-clock) on ``day``."""
        whole = int(seconds)
        clock = datetime.time(whole // 3600, whole % 3600 // 60, whole % 60)
        return self._at(day, clock) + (seconds - whole)

    def _at(self, day: datetime.date, clock: datetime.time) -> float:
        return datetime.datetime.combine(day, clock, self.tz).timestamp()


class PrewarmMemory:
    """The remembered pairs and the decisions about them (least recently asked first)."""

    def __init__(
        self,
        max_records: int = MAX_RECORDS,
        max_age: float = MAX_AGE,
        lead: float = LEAD,
        tz: datetime.tzinfo | None = None,
    ) -> None:
        self.max_records = max_records
        self.max_age = max_age
        self.lead = lead
        self.calendar = Calendar(tz)
        self.records: OrderedDict[Key, Record] = OrderedDict()
        #: True when something worth writing changed since :meth:`saved`.
        self.dirty = False

    def __len__(self) -> int:
        return len(self.records)

    # -- what requests teach ---------------------------------------------------------------

    def asked(
        self, subject: Subject, target: RegistryTarget, label: str, now: float, held: Any = None
    ) -> bool:
        """A request for the pair; True when that changed what is worth writing.

        Cheap on the warm path: one lookup, and the calendar only once a day per pair.
        """
        key = (subject, target)
        record = self.records.get(key)
        if record is None:
            record = self.records[key] = Record(subject, target, label, now)
            self._bound()
        else:
            self.records.move_to_end(key)
        record.last_asked = now
        if held is not None:
            record.held = held
        if now < record.day_ends:
            return False
        record.label = label
        record.first_asks.append(now)
        self._trim(record, now)
        record.day_ends = self.calendar.next_day_start(now)
        changed = record.durable
        self.dirty = self.dirty or changed
        return changed

    def forget(self, key: Key) -> None:
        """Forget a pair whose identity no longer resolves, or whose login is over."""
        record = self.records.pop(key, None)
        if record is not None and record.durable:
            self.dirty = True

    def prewarmed(self, key: Key, now: float) -> None:
        record = self.records.get(key)
        if record is not None:
            record.prewarmed_at = now

    def saved(self) -> None:
        self.dirty = False

    # -- when to pre-warm ------------------------------------------------------------------

    def at_start(self, now: float) -> list[Record]:
        """Every pair worth warming when the daemon starts, most recently asked first."""
        self.expire(now)
        return list(reversed(self.records.values()))

    def next_at(self, record: Record, now: float) -> float | None:
        """When ``record`` should next be pre-warmed (may be ``<= now``: due), or None."""
        if not record.first_asks:
            return None
        cal = self.calendar
        today = cal.moment(now).date()
        asked_day = cal.moment(record.first_asks[-1]).date()
        handled = None if record.handled_day is None else cal.moment(record.handled_day).date()
        skipped = self._skipped_weekdays(record, today)
        offset = self._time_of_day(record) - self.lead
        for ahead in range(8):
            day = today + datetime.timedelta(days=ahead)
            if day.weekday() in skipped or day in (asked_day, handled):
                continue
            when = cal.at(day, 0.0) + offset
            if when < now - LATE:
                continue
            return when
        return None

    def due(self, now: float) -> list[Record]:
        """The pairs whose time has come, each marked handled for its day."""
        self.expire(now)
        due = []
        for record in reversed(self.records.values()):
            when = self.next_at(record, now)
            if when is not None and when <= now:
                record.handled_day = self.calendar.day_start(when + self.lead)
                due.append(record)
        return due

    def next_due(self, now: float) -> float | None:
        """The earliest time any pair is due, or None."""
        times = [self.next_at(record, now) for record in self.records.values()]
        return min((t for t in times if t is not None), default=None)

    def _time_of_day(self, record: Record) -> float:
        """The lower quartile of the recent first requests' times of day: one odd early
        morning does not move it, and most days' first request comes after it."""
        times = sorted(self.calendar.time_of_day(t) for t in record.first_asks)
        return times[len(times) // 4]

    def _skipped_weekdays(self, record: Record, today: datetime.date) -> set[int]:
        """Days of the week that passed since the pair was first remembered without a request."""
        cal = self.calendar
        seen = {cal.moment(t).date() for t in record.first_asks}
        day = cal.moment(record.first_asks[0]).date()
        passed: set[int] = set()
        while day < today:
            if day not in seen:
                passed.add(day.weekday())
            day += datetime.timedelta(days=1)
        return passed - {d.weekday() for d in seen}

    # -- bounds ----------------------------------------------------------------------------

    def expire(self, now: float) -> None:
        """Forget the pairs not asked for ``max_age`` seconds."""
        for key in [k for k, r in self.records.items() if now - r.last_asked >= self.max_age]:
            self.forget(key)

    def _trim(self, record: Record, now: float) -> None:
        asks = [t for t in record.first_asks if now - t < self.max_age]
        record.first_asks = asks[-MAX_DAYS:]

    def _bound(self) -> None:
        while len(self.records) > self.max_records:
            _key, record = self.records.popitem(last=False)
            self.dirty = self.dirty or record.durable

    # -- the state file's content ----------------------------------------------------------

    def encode(self) -> bytes:
        """The state file's bytes: durable pairs only, labels, domains and times."""
        pairs = [
            {
                "home": r.subject.home,
                "profile": r.subject.name,
                "label": r.label,
                "domain": r.target.domain,
                "owner": r.target.owner,
                "region": r.target.region,
                "last_asked": round(r.last_asked, 3),
                "first_asks": [round(t, 3) for t in r.first_asks],
            }
            for r in self.records.values()
            if r.durable
        ]
        body = {"format": FORMAT, "version": VERSION, "pairs": pairs}
        return (json.dumps(body, indent=1, sort_keys=True) + "\n").encode()

    def load(self, records: Iterable[Record], now: float) -> None:
        """Take the records read from the state file, within the bounds.

        Times from the future (a clock set back, or a file from elsewhere) are not trusted.
        """
        for record in sorted(records, key=lambda r: r.last_asked):
            self._trim(record, now)
            record.first_asks = [t for t in record.first_asks if t <= now + DAY]
            if not now - self.max_age < record.last_asked <= now + DAY or not record.first_asks:
                continue
            last_day = record.first_asks[-1]
            record.day_ends = self.calendar.next_day_start(last_day)
            self.records[record.key] = record
            self.records.move_to_end(record.key)
        self._bound()


def decode(data: bytes) -> list[Record]:
    """The records of a state file; ``ValueError`` naming what is wrong (never its content)."""
    try:
        body = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise ValueError("not valid JSON") from None
    if not isinstance(body, dict) or body.get("format") != FORMAT:
        raise ValueError("not a menda-credd pre-warm file")
    if body.get("version") != VERSION:
        raise ValueError(f"format version {body.get('version')!r}, expected {VERSION}")
    pairs = body.get("pairs")
    if not isinstance(pairs, list):
        raise ValueError("no list of pairs")
    return [_record(item, n) for n, item in enumerate(pairs)]


def _record(item: object, n: int) -> Record:
    if not isinstance(item, dict):
        raise ValueError(f"pair {n} is not an object")

    def text(name: str) -> str:
        value = item.get(name)
        if not isinstance(value, str) or not value or len(value) > MAX_FIELD:
            raise ValueError(f"pair {n}: {name} is not a string")
        return value

    def number(value: object, name: str) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"pair {n}: {name} is not a time")
        if not 0 < value < MAX_TIME:
            raise ValueError(f"pair {n}: {name} is not a time")
        return float(value)

    home = text("home")
    if not home.startswith("/"):
        raise ValueError(f"pair {n}: home is not an absolute path")
    asks = item.get("first_asks")
    if not isinstance(asks, list) or len(asks) > MAX_DAYS:
        raise ValueError(f"pair {n}: first_asks is not a list of at most {MAX_DAYS} times")
    return Record(
        Subject("profile", home, text("profile"), ""),
        RegistryTarget(text("domain"), text("owner"), text("region")),
        text("label"),
        number(item.get("last_asked"), "last_asked"),
        sorted(number(t, "first_asks") for t in asks),
    )
