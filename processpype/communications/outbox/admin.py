"""Look into an outbox and act on it: ``outbox_status`` and ``retry_dead_letters``.

What ``processpype-notify outbox status`` and ``outbox retry-dead`` run.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from processpype.communications.outbox._redis import (
    GROUP,
    OutboxKeys,
    RedisError,
    connect,
    is_unavailable,
    unavailable_error,
)
from processpype.config.outbox import OutboxConfig

__all__ = ["DeadLetter", "OutboxStatus", "outbox_status", "retry_dead_letters"]

_SHOWN_DEAD = 20


@dataclass(frozen=True)
class DeadLetter:
    """One entry that ran out of deliveries."""

    id: str
    backend: str
    error: str
    deliveries: int
    preview: str


@dataclass(frozen=True)
class OutboxStatus:
    """A snapshot of one outbox."""

    url: str
    name: str
    length: int
    """Entries in the stream (unread, pending and acknowledged ones not trimmed yet)."""
    unread: int | None
    """Entries no worker has read yet (None when Redis cannot say)."""
    pending: dict[str, int] = field(default_factory=dict)
    """Entries read but not acknowledged, by consumer (worker)."""
    oldest_age: float | None = None
    """Seconds since the oldest entry not yet acknowledged was added (None: none)."""
    dead: int = 0
    """Dead letters."""
    dead_letters: tuple[DeadLetter, ...] = ()
    """The most recent dead letters (up to 20)."""
    leases: dict[str, str] = field(default_factory=dict)
    """Receiving backends and the process (``host-pid``) holding each one's updates."""

    @property
    def pending_total(self) -> int:
        """Entries read but not acknowledged, all consumers together."""
        return sum(self.pending.values())

    def as_dict(self) -> dict[str, Any]:
        """The status as JSON-ready data."""
        return {
            "url": self.url,
            "name": self.name,
            "length": self.length,
            "unread": self.unread,
            "pending": dict(self.pending),
            "oldest_age_seconds": self.oldest_age,
            "dead": self.dead,
            "dead_letters": [letter.__dict__ for letter in self.dead_letters],
            "leases": dict(self.leases),
        }


@contextlib.asynccontextmanager
async def _connected(config: OutboxConfig) -> AsyncIterator[Any]:
    """A Redis client of ``config``, closed after; Redis away is an OutboxUnavailableError."""
    client = connect(config, socket_timeout=config.connect_timeout + 5.0)
    try:
        yield client
    except RedisError as exc:
        if is_unavailable(exc):
            raise unavailable_error(config, exc) from exc
        raise
    except OSError as exc:
        raise unavailable_error(config, exc) from exc
    finally:
        await client.aclose()


def _millis(entry_id: str) -> int:
    return int(entry_id.split("-", 1)[0])


async def outbox_status(config: OutboxConfig) -> OutboxStatus:
    """The length, pending entries per consumer, oldest entry's age and dead letters."""
    keys = OutboxKeys(config.name)
    async with _connected(config) as client:
        seconds, micros = await client.time()
        now_ms = int(seconds) * 1000 + int(micros) // 1000
        length = int(await client.xlen(keys.stream))
        pending: dict[str, int] = {}
        unread: int | None = None
        oldest: str | None = None
        if length or await client.exists(keys.stream):
            groups = await _groups(client, keys.stream)
            group = next((g for g in groups if g.get("name") == GROUP), None)
            if group is None:
                unread = length
                first = await client.xrange(keys.stream, count=1)
                oldest = first[0][0] if first else None
            else:
                summary = await client.xpending(keys.stream, GROUP)
                for consumer in summary.get("consumers") or ():
                    pending[str(consumer["name"])] = int(consumer["pending"])
                if summary.get("pending"):
                    oldest = str(summary["min"])
                lag = group.get("lag")
                unread = int(lag) if lag is not None else None
                last = str(group.get("last-delivered-id", "0-0"))
                first_unread = await client.xrange(keys.stream, min=f"({last}", count=1)
                if first_unread and (
                    oldest is None or _millis(first_unread[0][0]) < _millis(oldest)
                ):
                    oldest = first_unread[0][0]
        leases: dict[str, str] = {}
        prefix = keys.lease("")
        async for key in client.scan_iter(match=f"{prefix}*", count=100):
            holder = await client.get(key)
            if holder:
                leases[str(key)[len(prefix) :]] = str(holder)
        dead_count = int(await client.xlen(keys.dead))
        letters = []
        for entry_id, fields in await client.xrevrange(keys.dead, count=_SHOWN_DEAD):
            text = str(fields.get("message", ""))
            letters.append(
                DeadLetter(
                    id=str(entry_id),
                    backend=str(fields.get("backend", "?")),
                    error=str(fields.get("error", "")),
                    deliveries=int(fields.get("deliveries") or 0),
                    preview=_preview(text),
                )
            )
    age = None if oldest is None else max(0.0, (now_ms - _millis(oldest)) / 1000)
    return OutboxStatus(
        url=config.display_url,
        name=config.name,
        length=length,
        unread=unread,
        pending=pending,
        oldest_age=age,
        dead=dead_count,
        dead_letters=tuple(letters),
        leases=leases,
    )


async def _groups(client: Any, stream: str) -> list[dict[str, Any]]:
    groups: list[dict[str, Any]] = await client.xinfo_groups(stream)
    return groups


def _preview(message_json: str) -> str:
    import json

    try:
        text = str(json.loads(message_json).get("message", ""))
    except (ValueError, AttributeError):
        text = message_json
    return text if len(text) <= 60 else text[:59] + "…"


async def retry_dead_letters(config: OutboxConfig, *, backend: str | None = None) -> int:
    """Put dead letters (of ``backend`` only, when given) back in the outbox; return how many.

    Each moves in one transaction (added to the outbox, removed from the dead letters),
    so none is lost or doubled if this is interrupted.
    """
    keys = OutboxKeys(config.name)
    moved = 0
    async with _connected(config) as client:
        last = "-"
        while True:
            batch = await client.xrange(keys.dead, min=last, count=100)
            batch = [(i, f) for i, f in batch if i != last] if last != "-" else batch
            if not batch:
                break
            for entry_id, fields in batch:
                last = entry_id
                if backend is not None and fields.get("backend") != backend:
                    continue
                entry = {k: fields[k] for k in ("backend", "key", "message") if k in fields}
                pipe = client.pipeline(transaction=True)
                pipe.xadd(keys.stream, entry)
                pipe.xdel(keys.dead, entry_id)
                await pipe.execute()
                moved += 1
    return moved
