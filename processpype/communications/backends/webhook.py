"""Webhook backends on httpx: a generic JSON webhook, Slack and Discord.

- ``WebhookCommunicator`` (``type: webhook``) posts a JSON body built from a template
  (default: the message as JSON) to any HTTP endpoint.
- ``SlackCommunicator`` (``type: slack``) posts ``{"text": ...}`` to an incoming webhook.
- ``DiscordCommunicator`` (``type: discord``) posts ``{"content": ...}`` to a webhook.

Each backend owns one ``httpx.AsyncClient``, opened by ``start()``, reused for every
message and closed by ``stop()``. Messages go out one at a time in the order they were
handed over. A 5xx or 429 reply is retried with exponential backoff, honouring
``Retry-After`` (seconds or an HTTP date) up to ``max_retry_delay``; any other reply
outside 2xx fails at once. The URL is a secret (Slack and Discord put the token in its
path): logs and errors show its scheme and host only.

Attachments: the generic webhook sends them base64 in the JSON body (default), as
``multipart/form-data`` (``payload_json`` and ``files[n]``) or not at all (``omit``);
Discord always posts ``multipart/form-data`` within ``max_attachments`` and
``max_attachment_bytes``; Slack's incoming webhooks cannot take files, so the text names
them and the result's ``warnings`` say they were not attached.

The body template language is in ``_template``. Importing this module without httpx
raises ``BackendUnavailableError`` (``pip install 'processpype[webhook]'``).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import email.utils
import hashlib
import json
import logging
import math
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar, NamedTuple

try:
    import httpx
except ModuleNotFoundError as exc:  # pragma: no cover - the minimal environment tests it
    from processpype.communications.backends._requires import unavailable

    raise unavailable(exc, "webhook", "httpx", "webhook") from None

from processpype import __version__
from processpype.communications.backends._attachment_limits import count_problem, total_problem
from processpype.communications.backends._json import message_json
from processpype.communications.backends._retry import backoff_delay
from processpype.communications.backends._split import (
    cap_parts,
    split_keeping_fences,
    split_text,
    utf16_length,
)
from processpype.communications.backends._template import (
    TEMPLATE_FIELDS,
    compile_template,
    render_template,
    uses_field,
)
from processpype.communications.base import Communicator
from processpype.communications.delivery import IDEMPOTENCY_KEY, DeliveryResult
from processpype.config.models import (
    DiscordCommunicatorConfig,
    SlackCommunicatorConfig,
    WebhookCommunicatorConfig,
)
from processpype.foundation._masking import redact, url_secrets
from processpype.foundation.errors import ConfigError, SendError, describe_error
from processpype.foundation.models import Attachment, MessageSeverity, OutgoingMessage

__all__ = [
    "DISCORD_CONTENT_LIMIT",
    "SLACK_NOT_ATTACHED",
    "SLACK_TEXT_LIMIT",
    "TEMPLATE_FIELDS",
    "DiscordCommunicator",
    "SlackCommunicator",
    "WebhookCommunicator",
    "cap_parts",
    "parse_retry_after",
    "split_text",
    "utf16_length",
]

logger = logging.getLogger("processpype.communications.webhook")

SLACK_TEXT_LIMIT = 4000
"""Longest Slack ``text`` sent in one post (Slack advises staying under 4,000 characters)."""

DISCORD_CONTENT_LIMIT = 2000
"""Longest Discord ``content`` (Discord refuses longer messages)."""

SLACK_NOT_ATTACHED = "Slack incoming webhooks cannot upload files"
"""Why a Slack message names its files instead of carrying them."""

_ERROR_BODY_CHARS = 200
_BODY_LIMIT = 8192
"""Bytes of a reply read at most (error text, Discord's retry_after); the rest is dropped
with the connection, so a 256 MiB error page costs 8 KiB."""
_REPLY_LIMIT = 1024 * 1024
"""Bytes of a 2xx reply read at most by a backend that needs it (Discord's posted message,
with its id: its 2,000 characters of content, JSON-escaped, and files' URLs pass 8 KiB)."""
_BAD_HEADER_CHARS = "\x00\x0b\x0c"  # besides CR and LF, what h11 refuses in a value
_SEVERITY_EMOJI: dict[MessageSeverity, str] = {
    MessageSeverity.DEBUG: "\N{MEDIUM WHITE CIRCLE}",
    MessageSeverity.INFO: "\N{LARGE BLUE CIRCLE}",
    MessageSeverity.WARNING: "\N{LARGE YELLOW CIRCLE}",
    MessageSeverity.ERROR: "\N{LARGE RED CIRCLE}",
    MessageSeverity.CRITICAL: "\N{POLICE CARS REVOLVING LIGHT}",
}

_HttpBackendConfig = WebhookCommunicatorConfig | SlackCommunicatorConfig | DiscordCommunicatorConfig


# -- helpers: URLs, Retry-After, splitting ------------------------------------------------


def _endpoint(url: str, key: str) -> str:
    """``scheme://host[:port]`` of ``url`` (safe to show); ConfigError if it is no HTTP URL."""
    try:
        parsed = httpx.URL(url.strip())
    except (httpx.InvalidURL, TypeError, ValueError):
        # The message never repeats the URL: its path is the secret.
        raise ConfigError("is not a valid URL", key=key) from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ConfigError("must be an http:// or https:// URL with a host", key=key)
    host = f"[{parsed.host}]" if ":" in parsed.host else parsed.host
    port = f":{parsed.port}" if parsed.port is not None else ""
    return f"{parsed.scheme}://{host}{port}"


def parse_retry_after(value: str, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (seconds or HTTP date); None if invalid."""
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())
    if math.isnan(seconds):
        return None
    return max(0.0, seconds)


def _one_line(text: str) -> str:
    text = " ".join(text.split())
    if len(text) > _ERROR_BODY_CHARS:
        text = text[:_ERROR_BODY_CHARS] + "..."
    return text


def _idempotency_key(message: OutgoingMessage) -> str | None:
    """The message's stable id as a header value (hashed when it is not plain ASCII)."""
    key = message.metadata.get(IDEMPOTENCY_KEY)
    if not isinstance(key, str) or not key:
        return None
    if key.isascii() and key.isprintable() and len(key) <= 200:
        return key
    return hashlib.sha256(key.encode()).hexdigest()


def _with_data(attachment: Attachment) -> dict[str, Any]:
    return {
        "filename": attachment.filename,
        "content_type": attachment.content_type,
        "size": attachment.size,
        "data": base64.b64encode(attachment.data).decode("ascii"),
    }


def _names(attachments: list[Attachment]) -> str:
    return ", ".join(a.filename for a in attachments)


@dataclass(frozen=True)
class _Multipart:
    """A body sent as multipart/form-data: ``payload_json``, then ``files[0]``, ``files[1]``..."""

    payload: Any
    files: tuple[Attachment, ...]


def _request_content(payload: Any) -> dict[str, Any]:
    """The httpx keywords that send ``payload``: JSON, or multipart with its files."""
    if isinstance(payload, _Multipart):
        return {
            "data": {"payload_json": json.dumps(payload.payload, ensure_ascii=False)},
            "files": [
                (f"files[{index}]", (a.filename, a.data, a.content_type))
                for index, a in enumerate(payload.files)
            ],
        }
    return {"json": payload}


# -- the backends -------------------------------------------------------------------------


class _Bodies(NamedTuple):
    """The request bodies that carry one message, and the ``max_parts`` warning when its
    text was cut (it travels with the bodies: each message has its own)."""

    payloads: list[Any]
    cut: str | None = None


class _HttpCommunicator(Communicator):
    """What the three webhook backends share: the client, the send lock, retries."""

    _kind: ClassVar[str] = "webhook"
    _reads_reply: ClassVar[bool] = False  # True: a 2xx reply's body is read up to _REPLY_LIMIT

    def __init__(self, name: str, config: _HttpBackendConfig) -> None:
        super().__init__(name, config)
        self._http_config = config
        self._endpoint = _endpoint(config.url.get_secret_value(), f"backends.{name}.url")
        # The URL as httpx writes it, so the log redaction recognises it.
        self._url = str(httpx.URL(config.url.get_secret_value().strip()))
        # A server may echo the path or query (``Cannot POST /services/T0/B0/SECRET``).
        self._secrets = url_secrets(self._url)
        self._client: httpx.AsyncClient | None = None
        self._lock: asyncio.Lock | None = None
        self._idle: asyncio.Event | None = None
        self._pending = 0
        self._deliver_url = self._url  # where a message is posted (Discord adds ?wait=true)

    @property
    def endpoint(self) -> str:
        """The URL's scheme, host and port: the part of the URL that is safe to show."""
        return self._endpoint

    @property
    def _method(self) -> str:
        return "POST"

    def _headers(self) -> dict[str, str]:
        return {"User-Agent": f"processpype/{__version__}"}

    def _payloads(self, message: OutgoingMessage) -> _Bodies:
        """The bodies that carry ``message`` (several when its text is split)."""
        raise NotImplementedError

    def _split(
        self, text: str, limit: int, cost: Callable[[str], int]
    ) -> tuple[list[str], str | None]:
        """``text`` in pieces of at most ``limit``, no more than ``max_parts`` of them; and
        the warning saying how much was cut (None when nothing was)."""
        max_parts = getattr(self._http_config, "max_parts", None)
        if max_parts is None:
            return split_keeping_fences(text, limit, cost), None
        return cap_parts(
            text, limit, max_parts, lambda part: split_keeping_fences(part, limit, cost), cost
        )

    def _warnings(self, message: OutgoingMessage) -> tuple[str, ...]:
        """What of ``message`` these bodies do not carry (files this service cannot take)."""
        return ()

    async def start(self) -> None:
        """Open the HTTP client (no request is made)."""
        if self._client is None:
            self._client = httpx.AsyncClient(
                headers=self._headers(),
                timeout=httpx.Timeout(self._http_config.timeout),
                follow_redirects=False,
            )
        if self._pending == 0:
            # Made here, not in __init__: they belong to the loop the backend runs on.
            self._lock = asyncio.Lock()
            self._idle = asyncio.Event()
            self._idle.set()
        self._started = True

    async def stop(self) -> None:
        """Refuse new messages, wait up to ``timeout`` s for the one in flight, close.

        The client is closed even when the wait is cancelled (a caller's own deadline).
        """
        self._started = False
        try:
            if self._pending:
                await self.flush(self._http_config.timeout)
        finally:
            client, self._client = self._client, None
            if client is not None:
                await client.aclose()

    async def send(self, message: OutgoingMessage) -> None:
        """Post ``message``; raises ``SendError`` when it did not go out."""
        await self.deliver(message)

    async def deliver(self, message: OutgoingMessage) -> DeliveryResult:
        """Post ``message`` (retrying 5xx and 429) and report how many tries it took.

        When the text is split, ``attempts`` is the most tries any part needed.
        """
        self._check_started()
        payloads, warning = self._payloads(message)
        if warning is not None:
            logger.warning("%s: %s", self.name, warning)
        warnings = self._warnings(message) if message.attachments else ()
        key = _idempotency_key(message)
        async with self._turn():  # the first await: the message's place in the order
            attempts, replies = await self._post_parts(payloads, key)
            for problem in warnings:
                logger.warning("%s: %s", self.name, problem)
        reference = self._reference(message, replies)
        return _delivered(self.name, attempts, reference, (*warnings, *filter(None, [warning])))

    def _check_started(self) -> tuple[asyncio.Lock, asyncio.Event]:
        """The send lock and the idle event; ``SendError`` when the backend is not started."""
        lock, idle = self._lock, self._idle
        if not self._started or self._client is None or lock is None or idle is None:
            raise SendError(f"{self._kind} backend is not started", backend=self.name, attempts=0)
        return lock, idle

    @contextlib.asynccontextmanager
    async def _turn(self) -> AsyncIterator[None]:
        """Hold the send lock, counted as pending meanwhile (``flush`` and ``stop`` wait).

        Its lock is taken before the first await: the message's place in the order.
        """
        lock, idle = self._check_started()
        self._pending += 1
        idle.clear()
        try:
            async with lock:
                yield
        finally:
            self._pending -= 1
            if self._pending == 0:
                idle.set()

    async def _post_parts(
        self, payloads: list[Any], key: str | None
    ) -> tuple[int, list[httpx.Response]]:
        """Post the bodies of one message in turn; the most tries a part needed, the replies.

        The same idempotency key on every resend (one per part when split) lets the
        receiver drop a duplicate.
        """
        attempts = 0
        replies: list[httpx.Response] = []
        for index, payload in enumerate(payloads):
            headers = None
            if key is not None:
                part_key = key if len(payloads) == 1 else f"{key}-{index + 1}"
                headers = {"Idempotency-Key": part_key}
            tries, reply = await self._post(
                payload, index + 1, len(payloads), url=self._deliver_url, headers=headers
            )
            attempts = max(attempts, tries)
            replies.append(reply)
        return attempts, replies

    def _reference(
        self, message: OutgoingMessage, replies: list[httpx.Response]
    ) -> tuple[str, ...]:
        """What names the posts of ``message`` for a later edit (none: this backend cannot edit)."""
        return ()

    async def flush(self, timeout: float | None = None) -> bool:
        """Wait until no message is being sent; True when that happened in time."""
        idle = self._idle
        if self._pending == 0 or idle is None:
            return True
        try:
            await asyncio.wait_for(idle.wait(), timeout)
        except TimeoutError:
            return False
        return True

    def _fail(
        self, problem: str, part: int, parts: int, *, attempts: int, permanent: bool
    ) -> SendError:
        if parts > 1:
            done = f"parts 1-{part - 1} were delivered" if part > 2 else "part 1 was delivered"
            problem = f"part {part} of {parts}: {problem}" + (f" ({done})" if part > 1 else "")
        return SendError(problem, backend=self.name, attempts=attempts, permanent=permanent)

    async def _post(
        self,
        payload: Any,
        part: int,
        parts: int,
        *,
        method: str | None = None,
        url: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, httpx.Response]:
        """Post one body (to ``url`` with ``method``, default the backend's); return the
        tries and the 2xx reply (Discord reads the posted message's id in it)."""
        config = self._http_config
        url = self._url if url is None else url
        method = self._method if method is None else method
        where = self._endpoint
        attempt = 0

        def fail(
            problem: str, *, attempts: int | None = None, permanent: bool = False
        ) -> SendError:
            # The tries so far (read when raised), and which part of how many failed.
            tries = attempt if attempts is None else attempts
            return self._fail(problem, part, parts, attempts=tries, permanent=permanent)

        while True:
            attempt += 1
            client = self._client
            if client is None:
                raise fail(
                    "the backend was stopped before the message was sent", attempts=attempt - 1
                )
            deadline = config.attempt_deadline()
            try:
                async with asyncio.timeout(deadline):
                    response = await self._request(client, method, url, payload, headers)
            except TimeoutError as exc:  # ours: httpx's own timeouts are httpx errors
                # Headers came, then the body trickled (or nothing came) past the whole
                # attempt's deadline: the server may have acted on the request.
                raise fail(
                    f"no complete response from {where} within {deadline:g} s "
                    "(attempt_timeout); not retried, since the server may have received it"
                ) from exc
            except httpx.ReadTimeout as exc:
                # The server has the request and did not answer in time: it may have
                # acted on it, and a retry could post the message twice.
                raise fail(
                    f"no response from {where} within {config.timeout:g} s; not retried, "
                    "since the server may have received it"
                ) from exc
            except httpx.LocalProtocolError as exc:
                raise fail(
                    f"the request to {where} is invalid: {describe_error(exc)}", permanent=True
                ) from exc
            except httpx.TransportError as exc:
                if self._client is not client:
                    # stop() closed the client under this request, after waiting its
                    # timeout: the server may have it, and the backend is gone.
                    raise fail(
                        f"the backend stopped while the request to {where} was in flight; "
                        "not retried, since the server may have received it"
                    ) from exc
                # Not connected, or the connection dropped before an answer (a pooled
                # keep-alive connection closed by the server): safe to try again.
                if attempt >= config.max_attempts:
                    raise fail(
                        f"could not reach {where} after {attempt} attempt(s): {describe_error(exc)}"
                    ) from exc
                delay = self._backoff(attempt)
                self._log_retry(attempt, describe_error(exc), delay, "backoff")
                await asyncio.sleep(delay)
                continue
            except httpx.HTTPError as exc:
                raise fail(f"request to {where} failed: {describe_error(exc)}") from exc

            status = response.status_code
            if 200 <= status < 300:
                return attempt, response
            if status == 429 or status >= 500:
                detail = self._echo(response)
                problem = f"HTTP {status} from {where}" + (f": {detail}" if detail else "")
                if attempt >= config.max_attempts:
                    raise fail(f"{problem} (gave up after {attempt} attempts)")
                delay, reason = self._retry_delay(response, attempt)
                self._log_retry(attempt, problem, delay, reason)
                await asyncio.sleep(delay)
                continue
            raise fail(self._refusal(response), permanent=True)

    async def _request(
        self,
        client: httpx.AsyncClient,
        method: str,
        url: str,
        payload: Any,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        """Send one request; the reply with at most ``_BODY_LIMIT`` bytes of its body
        (``_REPLY_LIMIT`` for a 2xx reply the backend reads).

        The body is streamed: past the limit the response is closed unread, which drops
        the connection instead of reading a huge page to the end.
        """
        async with client.stream(
            method, url, headers=headers, **_request_content(payload)
        ) as streamed:
            limit = (
                _REPLY_LIMIT
                if self._reads_reply and 200 <= streamed.status_code < 300
                else _BODY_LIMIT
            )
            chunks: list[bytes] = []
            size = 0
            async for chunk in streamed.aiter_bytes():
                chunks.append(chunk)
                size += len(chunk)
                if size >= limit:
                    break
        kept = [
            (key, value)
            for key, value in streamed.headers.multi_items()
            if key.lower() not in ("content-encoding", "content-length", "transfer-encoding")
        ]
        return httpx.Response(
            streamed.status_code,
            headers=kept,
            content=b"".join(chunks)[:limit],
            request=streamed.request,
        )

    def _refusal(self, response: httpx.Response) -> str:
        status = response.status_code
        if 300 <= status < 400:
            location = response.headers.get("Location", "")
            target = ""
            if location:
                try:
                    target = _endpoint(str(response.url.join(location)), "Location")
                except ConfigError:
                    target = "an invalid address"
            moved = f" redirects to {target}" if target else " redirects"
            return f"HTTP {status} from {self._endpoint}{moved}: set url to the new address"
        detail = self._echo(response)
        return (
            f"HTTP {status} from {self._endpoint}"
            + (f": {detail}" if detail else "")
            + (" (not retried)")
        )

    def _echo(self, response: httpx.Response) -> str:
        """The start of a reply's body on one line, with any echo of the URL's secrets masked."""
        return _one_line(redact(response.text, self._secrets))

    def _backoff(self, attempt: int) -> float:
        config = self._http_config
        return backoff_delay(attempt, config.retry_base_delay, config.max_retry_delay)

    def _retry_after(self, response: httpx.Response) -> float | None:
        header = response.headers.get("Retry-After")
        return parse_retry_after(header) if header else None

    def _retry_delay(self, response: httpx.Response, attempt: int) -> tuple[float, str]:
        asked = self._retry_after(response)
        if asked is None:
            return self._backoff(attempt), "backoff"
        cap = self._http_config.max_retry_delay
        if asked > cap:
            logger.warning(
                "%s: %s asked to wait %g s (Retry-After); waiting max_retry_delay %g s instead",
                self.name,
                self._endpoint,
                asked,
                cap,
            )
            return cap, "Retry-After, capped"
        return asked, "Retry-After"

    def _log_retry(self, attempt: int, problem: str, delay: float, reason: str) -> None:
        logger.warning(
            "%s: %s; try %d of %d in %.3g s (%s)",
            self.name,
            problem,
            attempt + 1,
            self._http_config.max_attempts,
            delay,
            reason,
        )


class WebhookCommunicator(_HttpCommunicator):
    """Posts a JSON body, built from the ``body`` template, to any HTTP endpoint."""

    _kind = "webhook"

    def __init__(self, name: str, config: WebhookCommunicatorConfig) -> None:
        super().__init__(name, config)
        self._webhook_config = config
        for header, value in config.headers.items():
            if not header.strip() or any(char in header for char in "\r\n:"):
                raise ConfigError("is not a valid header name", key=f"backends.{name}.headers")
            secret = value.get_secret_value()
            if any(char in secret for char in "\r\n"):
                raise ConfigError("contains a line break", key=f"backends.{name}.headers.{header}")
            if not secret.isascii() or any(char in secret for char in _BAD_HEADER_CHARS):
                # httpx would refuse it at start or at the first request, with an error
                # that quotes the value: a secret.
                raise ConfigError(
                    "contains a character not allowed in an HTTP header (a NUL, a vertical "
                    "tab or form feed, or a non-ASCII character)",
                    key=f"backends.{name}.headers.{header}",
                )
        self._template: Any = (
            None
            if config.body is None
            else compile_template(config.body, "body", f"backends.{name}.")
        )
        self._places_attachments = uses_field(self._template, "attachments")

    @property
    def _method(self) -> str:
        return self._webhook_config.method

    def _headers(self) -> dict[str, str]:
        headers = super()._headers()
        headers.update(
            {key: value.get_secret_value() for key, value in self._webhook_config.headers.items()}
        )
        return headers

    def render_body(self, message: OutgoingMessage) -> Any:
        """The JSON body posted for ``message``; ``SendError`` names a missing placeholder.

        With ``attachments: base64`` each file's ``data`` is in the body, base64 encoded;
        otherwise ``attachments`` lists name, type and size only. The default body has
        ``attachments`` only when the message has files.
        """
        # ``attachments`` lists each file's name, type and size (the JSON dump has no bytes).
        fields = message_json(message)
        if message.attachments and self._webhook_config.attachments == "base64":
            fields["attachments"] = [_with_data(a) for a in message.attachments]
        if self._template is None:
            if not message.attachments:
                del fields["attachments"]
            return fields
        return render_template(self._template, fields)

    def _payloads(self, message: OutgoingMessage) -> _Bodies:
        try:
            body = self.render_body(message)
        except SendError as exc:
            exc.backend = self.name
            raise
        if message.attachments and self._webhook_config.attachments == "multipart":
            return _Bodies([_Multipart(body, tuple(message.attachments))])
        return _Bodies([body])

    def _warnings(self, message: OutgoingMessage) -> tuple[str, ...]:
        mode = self._webhook_config.attachments
        if mode == "omit":
            return (f"attachments not sent (attachments: omit): {_names(message.attachments)}",)
        if mode == "base64" and self._template is not None and not self._places_attachments:
            return (
                "attachments not sent: the body template has no {attachments} placeholder: "
                + _names(message.attachments),
            )
        return ()


class SlackCommunicator(_HttpCommunicator):
    """Posts ``{"text": ...}`` to a Slack incoming webhook, split at ``SLACK_TEXT_LIMIT``."""

    _kind = "slack"

    @staticmethod
    def _cost(text: str) -> int:
        # Slack needs &, < and > escaped; count the text as it is sent.
        return utf16_length(text) + 4 * text.count("&") + 3 * (text.count("<") + text.count(">"))

    @staticmethod
    def _escape(text: str) -> str:
        return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")

    def render_text(self, message: OutgoingMessage) -> str:
        """The text for ``message`` before escaping and splitting: severity first.

        Files cannot travel through an incoming webhook: a last line names them.
        """
        return self._body_text(message) + self._files_line(message)

    @staticmethod
    def _body_text(message: OutgoingMessage) -> str:
        severity = message.severity
        head = f"{_SEVERITY_EMOJI[severity]} *{severity.value.upper()}*"
        return _compose(head, message)

    @classmethod
    def _files_line(cls, message: OutgoingMessage) -> str:
        files = message.attachments
        if not files:
            return ""
        line = f"\n\N{PAPERCLIP} Not attached ({SLACK_NOT_ATTACHED}): "
        named: list[str] = []
        for index, attachment in enumerate(files):
            entry = attachment.describe()
            if cls._cost(line + ", ".join([*named, entry])) > SLACK_TEXT_LIMIT // 2:
                # Many files: the rest counted, so the line always fits one post.
                return line + ", ".join(named) + f" and {len(files) - index} more"
            named.append(entry)
        return line + ", ".join(named)

    def _payloads(self, message: OutgoingMessage) -> _Bodies:
        line = self._files_line(message)
        # The line naming the files ends the last piece, with room kept for it, so a
        # max_parts cut of a long text cannot take it away.
        room = max(SLACK_TEXT_LIMIT // 2, SLACK_TEXT_LIMIT - self._cost(line))
        chunks, cut = self._split(self._body_text(message), room, self._cost)
        if line:
            chunks[-1] += line
        return _Bodies([{"text": self._escape(chunk)} for chunk in chunks], cut)

    def _warnings(self, message: OutgoingMessage) -> tuple[str, ...]:
        return (f"not attached ({SLACK_NOT_ATTACHED}): {_names(message.attachments)}",)


class DiscordCommunicator(_HttpCommunicator):
    """Posts ``{"content": ...}`` to a Discord webhook, split at 2000 characters.

    Mentions in the text (``@everyone``, roles, users) are shown but notify nobody.
    """

    _kind = "discord"
    _reads_reply = True  # the posted message, for its id

    def __init__(self, name: str, config: DiscordCommunicatorConfig) -> None:
        super().__init__(name, config)
        self._discord_config = config
        self._edits = _DiscordEdits(self)
        self._deliver_url = self._edits.wait_url

    @property
    def supports_editing(self) -> bool:
        """True: posts wait for Discord's message ids, and ``edit`` patches those messages."""
        return True

    async def edit(self, reference: tuple[str, ...], message: OutgoingMessage) -> DeliveryResult:
        """Edit the message posted as ``reference`` (``PATCH .../messages/{id}``)."""
        return await self._edits.edit(reference, message)

    def _reference(
        self, message: OutgoingMessage, replies: list[httpx.Response]
    ) -> tuple[str, ...]:
        """The ids of the posted pieces (``?wait=true`` makes Discord answer with them)."""
        return self._edits.posted(message, replies)

    def render_text(self, message: OutgoingMessage) -> str:
        """The text for ``message`` before splitting: severity first."""
        severity = message.severity
        head = f"{_SEVERITY_EMOJI[severity]} **{severity.value.upper()}**"
        return _compose(head, message)

    def _payloads(self, message: OutgoingMessage) -> _Bodies:
        files = message.attachments
        if files:
            self._check_limits(files)
        chunks, cut = self._split(self.render_text(message), DISCORD_CONTENT_LIMIT, utf16_length)
        payloads: list[Any] = []
        for chunk in chunks:
            payload: dict[str, Any] = {"content": chunk, "allowed_mentions": {"parse": []}}
            if self._discord_config.username:
                payload["username"] = self._discord_config.username
            payloads.append(payload)
        if files:
            # The files ride on the last part, so they show under the whole text.
            last = payloads[-1]
            last["attachments"] = [{"id": i, "filename": a.filename} for i, a in enumerate(files)]
            payloads[-1] = _Multipart(last, tuple(files))
        return _Bodies(payloads, cut)

    def _check_limits(self, files: list[Attachment]) -> None:
        config = self._discord_config
        problem = count_problem(files, config.max_attachments, "max_attachments") or total_problem(
            files, config.max_attachment_bytes, "max_attachment_bytes"
        )
        if problem is not None:
            raise SendError(
                f"discord backend {self.name!r}: {problem}; nothing was sent",
                backend=self.name,
                attempts=0,
                permanent=True,
            )

    def _retry_after(self, response: httpx.Response) -> float | None:
        asked = super()._retry_after(response)
        if asked is not None or response.status_code != 429:
            return asked
        # Discord also says how long to wait in its JSON body.
        try:
            seconds = response.json().get("retry_after")
        except (ValueError, AttributeError):
            return None
        if isinstance(seconds, int | float) and not isinstance(seconds, bool):
            return max(0.0, float(seconds))
        return None


class _DiscordEdits:
    """Message ids and edits for one Discord webhook backend.

    Posts and edits go through the backend's one send path (its send lock, pending
    count and retries: ``_turn`` and ``_post``). Discord answers a webhook post with 204
    and no body, unless the URL asks ``?wait=true``: then it answers 200 with the
    message, whose ``id`` is what ``PATCH {url}/messages/{id}`` edits and ``DELETE``
    removes. An edit whose text needs more pieces posts the extra ones; pieces no longer
    needed are deleted.
    """

    def __init__(self, backend: DiscordCommunicator) -> None:
        self._backend = backend
        base = httpx.URL(backend._url)
        self._base = base
        self.wait_url = str(base.copy_merge_params({"wait": "true"}))
        """Where a message is posted: ``?wait=true`` asks Discord for the message's id."""
        # Ids of posts that carry files (the last post of a message with attachments),
        # most recent last: an edit keeps such a post instead of deleting it.
        self._with_files: dict[str, None] = {}

    def _message_url(self, message_id: str) -> str:
        # Query parameters (thread_id) stay: Discord needs them to find a thread's message.
        path = f"{self._base.path.rstrip('/')}/messages/{message_id}"
        return str(self._base.copy_with(path=path))

    def posted(self, message: OutgoingMessage, replies: list[httpx.Response]) -> tuple[str, ...]:
        """The reference of ``message`` posted with these replies (its pieces' ids, or
        none when an id is missing); a post with files is remembered for edits."""
        ids = [_message_id(reply) for reply in replies]
        known = tuple(i for i in ids if i is not None)
        reference = known if len(known) == len(ids) else ()
        if message.attachments and ids and ids[-1] is not None:
            self._with_files[ids[-1]] = None
            if len(self._with_files) > _FILE_POSTS_KEPT:
                del self._with_files[next(iter(self._with_files))]
        return reference

    async def edit(self, reference: tuple[str, ...], message: OutgoingMessage) -> DeliveryResult:
        backend = self._backend
        if not reference or not all(part.isdigit() for part in reference):
            raise SendError(
                f"{backend.name}: {reference!r} is not the reference of a Discord message",
                backend=backend.name,
                attempts=0,
                permanent=True,
            )
        if message.attachments:
            # An edit changes the text only: the files stay on the post that carries them.
            message = message.model_copy(update={"attachments": []})
        payloads, warning = backend._payloads(message)
        if warning is not None:
            logger.warning("%s: %s", backend.name, warning)
        attempts = 0
        ids: list[str | None] = []
        targets, surplus = list(reference), list(reference[len(payloads) :])
        if surplus and reference[-1] in self._with_files:
            # The files are on the last post: it keeps them, with the text's last piece;
            # the posts between go.
            targets = [*reference[: len(payloads) - 1], reference[-1]]
            surplus = list(reference[len(payloads) - 1 : -1])
        async with backend._turn():
            for index, payload in enumerate(payloads):
                part, parts = index + 1, len(payloads)
                if index < len(targets):
                    url = self._message_url(targets[index])
                    # An edit takes no username: it stays the one of the post.
                    body = {k: v for k, v in payload.items() if k != "username"}
                    tries, _ = await backend._post(body, part, parts, method="PATCH", url=url)
                    ids.append(targets[index])
                else:
                    tries, reply = await backend._post(payload, part, parts, url=self.wait_url)
                    ids.append(_message_id(reply))
                attempts = max(attempts, tries)
            for message_id in surplus:
                await self._delete(message_id)
        known = tuple(i for i in ids if i is not None)
        reference = known if len(known) == len(ids) else ()
        return _delivered(backend.name, attempts, reference, tuple(filter(None, [warning])))

    async def _delete(self, message_id: str) -> None:
        """Delete a piece an edit no longer needs (best effort: it is logged on failure)."""
        backend = self._backend
        client = backend._client
        if client is None:
            return
        url = self._message_url(message_id)
        deadline = backend._http_config.attempt_deadline()
        try:
            async with asyncio.timeout(deadline):  # the whole request, as for every post
                response = await backend._request(client, "DELETE", url, None)
            if response.status_code >= 300 and response.status_code != 404:
                logger.warning(
                    "%s: could not delete a piece an edit made superfluous: HTTP %s",
                    backend.name,
                    response.status_code,
                )
        except TimeoutError:
            logger.warning(
                "%s: could not delete a piece an edit made superfluous: no answer within "
                "%g s (attempt_timeout)",
                backend.name,
                deadline,
            )
        except httpx.HTTPError as exc:
            logger.warning(
                "%s: could not delete a piece an edit made superfluous: %s",
                backend.name,
                describe_error(exc),
            )


_FILE_POSTS_KEPT = 1024
"""Discord posts with files remembered for edits (the oldest are forgotten beyond)."""


def _delivered(
    backend: str, attempts: int, reference: tuple[str, ...], warnings: tuple[str, ...]
) -> DeliveryResult:
    """A delivered result of a post or an edit, with its warnings (files left out, a cut)."""
    if not warnings:
        return DeliveryResult.delivered(backend, attempts=attempts, reference=reference)
    return DeliveryResult(
        backend=backend,
        status="delivered",
        attempts=attempts,
        reference=reference,
        warnings=warnings,
    )


def _message_id(response: httpx.Response | None) -> str | None:
    """The ``id`` of the message Discord returned (``?wait=true``), or None."""
    if response is None or not response.content:
        return None
    try:
        body = response.json()
    except ValueError:
        return None
    message_id = body.get("id") if isinstance(body, dict) else None
    if isinstance(message_id, int) and not isinstance(message_id, bool):
        message_id = str(message_id)
    return message_id if isinstance(message_id, str) and message_id.isdigit() else None


def _compose(head: str, message: OutgoingMessage) -> str:
    if message.subject:
        head += f" {message.subject}"
    if message.source:
        head += f" ({message.source})"
    if not message.subject and not message.source and "\n" not in message.message:
        return f"{head} {message.message}"
    return f"{head}\n{message.message}"
