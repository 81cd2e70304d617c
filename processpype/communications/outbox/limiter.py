"""``SharedTelegramLimiter``: Telegram's per-chat, per-group and per-bot limits across processes.

Telegram's limits belong to the bot token, not to a process: four workers pacing
themselves alone send four times what the bot may. This limiter keeps each sliding
window ("at most N sends in any W seconds") as a Redis sorted set and checks and records
a send in one Lua script that reads the server's clock (``TIME``), so every worker on
every host is measured against one clock. The windows are those of the backend's own
``TelegramRateLimits``; a send waits until every window it belongs to has room.

Each window is widened by ``margin`` seconds: the send is stamped when the script
runs, and the request reaches Telegram a little later, by a delay that differs between
processes; the margin keeps two sends stamped a window apart from arriving closer.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from typing import Any

from processpype.communications.outbox._redis import (
    OutboxKeys,
    Redis,
    is_unavailable,
    unavailable_error,
)
from processpype.config.outbox import OutboxConfig

__all__ = ["SharedTelegramLimiter", "attach_shared_limiter"]

logger = logging.getLogger("processpype.communications.outbox.limiter")

_DEFAULT_MARGIN = 0.05

# KEYS: chat window, group window, bot window. ARGV: count and width (µs) of each,
# whether the group window applies, a unique member id. Returns 0 once the send is
# recorded in every window, else the microseconds until the fullest one has room.
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local wait = 0
local function full(key, count, width)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - width)
  if redis.call('ZCARD', key) >= count then
    local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
    local until_free = tonumber(oldest[2]) + width - now
    if until_free > wait then wait = until_free end
  end
end
local grouped = ARGV[7] == '1'
full(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]))
if grouped then full(KEYS[2], tonumber(ARGV[3]), tonumber(ARGV[4])) end
full(KEYS[3], tonumber(ARGV[5]), tonumber(ARGV[6]))
if wait > 0 then return math.ceil(wait) end
local member = now .. '-' .. ARGV[8]
local function add(key, width)
  redis.call('ZADD', key, now, member)
  redis.call('PEXPIRE', key, math.ceil(width / 1000) + 1000)
end
add(KEYS[1], tonumber(ARGV[2]))
if grouped then add(KEYS[2], tonumber(ARGV[4])) end
add(KEYS[3], tonumber(ARGV[6]))
return 0
"""


class SharedTelegramLimiter:
    """The rate windows of one bot, kept in Redis and shared by every process using it.

    ``await acquire(chat, grouped)`` returns once a send to ``chat`` fits the per-chat
    window, the per-group window (``grouped``) and the bot-wide window, and counts it.
    ``limits`` is a ``TelegramRateLimits``.
    """

    def __init__(
        self,
        client: Redis,
        config: OutboxConfig,
        *,
        bot: str,
        limits: Any,
        margin: float = _DEFAULT_MARGIN,
    ) -> None:
        self._client = client
        self._config = config
        self._prefix = OutboxKeys(config.name).limit(bot)
        self._script = client.register_script(_ACQUIRE)
        chat_width = limits.chat_interval + margin
        group_count, group_window = limits.group_window
        global_count, global_window = limits.global_window
        self._args = (
            1,
            int(chat_width * 1e6),
            int(group_count),
            int((group_window + margin) * 1e6),
            int(global_count),
            int((global_window + margin) * 1e6),
        )
        self._token = uuid.uuid4().hex[:12]
        self._sequence = 0
        # One round trip to Redis may take this long, whatever socket timeout the
        # client has: a black-holed Redis must not hold a Telegram send for ever.
        self._call_timeout = config.connect_timeout + 1.0

    def __repr__(self) -> str:
        return f"SharedTelegramLimiter(prefix={self._prefix!r}, url={self._config.display_url!r})"

    async def acquire(self, chat: int | str, grouped: bool) -> None:
        """Wait until a send to ``chat`` fits every window, and count it in them."""
        keys = [f"{self._prefix}chat:{chat}", f"{self._prefix}group:{chat}", f"{self._prefix}bot"]
        while True:
            self._sequence += 1
            member = f"{self._token}-{self._sequence}"
            try:
                async with asyncio.timeout(self._call_timeout):
                    wait_us = int(
                        await self._script(
                            keys=keys, args=[*self._args, "1" if grouped else "0", member]
                        )
                    )
            except Exception as exc:
                if is_unavailable(exc):
                    raise unavailable_error(self._config, exc) from exc
                raise
            if wait_us <= 0:
                return
            await asyncio.sleep(wait_us / 1e6)

    async def aclose(self) -> None:
        """Close the Redis client."""
        await self._client.aclose()


def attach_shared_limiter(
    communicator: Any, config: OutboxConfig, connect: Callable[[], Redis]
) -> SharedTelegramLimiter | None:
    """Give a Telegram backend (one with a ``send_limiter`` hook) the shared limiter.

    Returns the limiter, or None when ``communicator`` takes none.
    """
    if not hasattr(communicator, "send_limiter"):
        return None
    backend_config = communicator.config
    token = getattr(backend_config, "token", None)
    if token is None:
        return None
    # The bot id (before the colon) names the bot; the secret after it is never used.
    bot = token.get_secret_value().split(":", 1)[0].strip() or "bot"
    limiter = SharedTelegramLimiter(connect(), config, bot=bot, limits=communicator.rate_limits)
    communicator.send_limiter = limiter
    logger.debug("%s: Telegram limits shared through the outbox for bot %s", communicator.name, bot)
    return limiter
