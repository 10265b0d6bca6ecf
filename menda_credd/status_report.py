"""What ``menda-credd status`` shows, bounded whatever the daemon holds.

The daemon may hold tens of thousands of entries (issue 14: 20,000 identities made
a 7.2 MB reply that no client could read). So the reply carries the broker's summary
of all entries (count by state, distinct identities) and at most ``MAX_ENTRIES`` rows
within ``ROW_BUDGET`` bytes, with ``truncated`` saying how many were left out; the
human table shows at most ``TABLE_ROWS`` of them. Plain functions, no I/O.
"""

from __future__ import annotations

import datetime
import json
import time
from collections.abc import Mapping
from typing import Any

#: Entry rows in a ``status`` reply (and so in ``status --json``) at most.
MAX_ENTRIES = 1000
#: Bytes of entry rows in a ``status`` reply at most (well under the client's MAX_REPLY).
ROW_BUDGET = 1024 * 1024
#: Entry rows in the human table at most; the summary line counts them all.
TABLE_ROWS = 20
#: How the service manager's line starts, aligned with the other labels.
SERVICE_LABEL = "service:      "


def bounded_rows(
    rows: list[dict[str, Any]], limit: int = MAX_ENTRIES, budget: int = ROW_BUDGET
) -> tuple[list[dict[str, Any]], int]:
    """The rows a reply carries (most recently used first) and how many were left out."""
    ordered = sorted(rows, key=_recency, reverse=True)
    kept: list[dict[str, Any]] = []
    spent = 0
    for row in ordered:
        if len(kept) >= limit:
            break
        size = len(json.dumps(row, separators=(",", ":"))) + 1
        if spent + size > budget:
            break
        kept.append(row)
        spent += size
    return kept, len(rows) - len(kept)


def _recency(row: Mapping[str, Any]) -> float:
    used = row.get("last_used")
    return float(used) if isinstance(used, (int, float)) else 0.0


def status_body(
    base: dict[str, Any], summary: Mapping[str, Any], rows: list[dict[str, Any]]
) -> dict[str, Any]:
    """The ``status`` reply's body: ``base`` fields, the broker's summary, bounded rows.

    ``rows`` are the broker's, most recently used first and at most ``MAX_ENTRIES``;
    ``truncated`` counts every entry left out (by the count or the byte budget).
    """
    kept, _cut = bounded_rows(rows)
    total = summary.get("entries")
    total = total if isinstance(total, int) else len(rows)
    return {
        **base,
        "summary": dict(summary),
        "entries": kept,
        "truncated": max(total - len(kept), 0),
        "entries_cap": MAX_ENTRIES,
    }


# -- the human table -----------------------------------------------------------------------


def when(ts: object) -> str:
    if not isinstance(ts, (int, float)):
        return "-"
    moment = datetime.datetime.fromtimestamp(ts).astimezone()
    delta = ts - time.time()
    rel = f"in {span(delta)}" if delta >= 0 else f"{span(-delta)} ago"
    return f"{moment:%H:%M:%S} ({rel})"


def span(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h{(seconds % 3600) // 60:02d}m"


def prewarm_line(prewarm: object) -> str:
    """``on, 3 pairs remembered in <file>, next at 08:40:00 (in 23h10m)``, or ``off``."""
    if not isinstance(prewarm, Mapping) or not prewarm.get("enabled"):
        return "off"
    where = prewarm.get("state_file") or "memory only"
    line = f"on, {prewarm.get('remembered', 0)} pairs remembered in {where}"
    if prewarm.get("next_at") is not None:
        line += f", next at {when(prewarm.get('next_at'))}"
    problem = prewarm.get("state_file_problem")
    return f"{line}; {problem}" if problem else line


def format_status(
    status: Mapping[str, Any],
    cli_version: str | None = None,
    rows: int = TABLE_ROWS,
    service: str | None = None,
) -> str:
    """The text ``menda-credd status`` prints: header, summary, at most ``rows`` entries.

    ``service`` is the service manager's line (``ServiceState.line``), if it has one.
    """
    counters = status.get("counters", {})
    version = status.get("version")
    differs = (
        f" (this menda-credd is {cli_version}: menda-credd stop && menda-credd start to switch)"
        if cli_version is not None and version != cli_version
        else ""
    )
    out = [
        f"menda-credd {version} running (pid {status.get('pid')}), "
        f"up {span(float(status.get('uptime', 0)))}{differs}",
        f"socket:       {status.get('socket')}"
        + (" (socket-activated)" if status.get("socket_activated") else ""),
        f"idle timeout: {span(float(status.get('idle_timeout', 0)))}",
        "counters:     " + ", ".join(f"{k} {v}" for k, v in counters.items()),
    ]
    if "prewarm" in status:  # (a daemon of an older release does not say)
        out.append("pre-warm:     " + prewarm_line(status["prewarm"]))
    if service is not None:
        out.append(SERVICE_LABEL + service)
    entries = list(status.get("entries", []))
    summary = status.get("summary")
    if isinstance(summary, Mapping):
        by_state = summary.get("by_state", {})
        states = ", ".join(f"{k} {v}" for k, v in by_state.items()) if by_state else "none"
        out.append(
            f"entries:      {summary.get('entries', len(entries))} ({states}), "
            f"{summary.get('identities', 0)} identities"
        )
    elif not entries:
        out.append("entries:      none")
    if not entries:
        return "\n".join(out)
    header = ("IDENTITY", "DOMAIN", "STATE", "EXPIRES", "LAST REFRESH", "REQUESTS", "PRE-WARMED")
    table = [header]
    for e in entries[:rows]:
        table.append(
            (
                str(e.get("identity")),
                f"{e.get('domain')}-{e.get('domain_owner')} ({e.get('region')})",
                str(e.get("state")),
                when(e.get("expires_at")),
                when(e.get("last_refresh")),
                str(e.get("requests")),
                when(e.get("prewarmed_at")),
            )
        )
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    out.append("")
    out.extend(
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in table
    )
    left = len(entries) - min(len(entries), rows) + int(status.get("truncated", 0) or 0)
    if left > 0:
        out.append(
            f"... and {left} more entries (most recently used shown; "
            f"menda-credd status --json lists up to {status.get('entries_cap', MAX_ENTRIES)})"
        )
    return "\n".join(out)
