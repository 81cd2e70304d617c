"""Email backend (``type: email``): sends messages through an SMTP server with aiosmtplib.

Send-only. One SMTP connection is opened (lazily, or by ``start()``) and reused for every
message; concurrent sends wait their turn on it, in the order they were handed over. A
connection the server dropped is re-opened; a 4xx reply, a dropped connection or an
unreachable server is retried with exponential backoff up to ``max_attempts``; a 5xx
reply is final. A message that did not go out raises ``SendError`` naming the server,
the SMTP step and the reason.

Recipients come from ``message.metadata["recipients"]`` (a list, or a comma-separated
string), else ``default_recipients``; with neither the message is skipped. When the
server refuses some recipients and accepts others, the message counts as delivered and
the result's ``error`` names each refused address with the server's reply. Recipients
refused with a 4xx reply (a busy or full mailbox, a rate limit) are sent the message
again, alone, with the same backoff, until accepted or ``max_attempts`` tries; a 5xx
refusal is final.

A message with attachments goes as ``multipart/mixed``: the text first, then each file
(base64, its name RFC 2231 encoded when not plain ASCII). Over ``max_attachment_bytes``
in total, the message fails at once naming the files, their sizes and the limit.

Without aiosmtplib, importing this module raises ``BackendUnavailableError``, which
says to install the ``email`` extra.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import hashlib
import logging
import re
import socket
import ssl
from dataclasses import dataclass
from email.utils import formatdate, make_msgid
from pathlib import Path
from typing import Any

try:
    import aiosmtplib
except ModuleNotFoundError as exc:  # pragma: no cover - the minimal environment tests it
    from processpype.communications.backends._requires import unavailable

    raise unavailable(exc, "email", "aiosmtplib", "email") from None

from processpype.communications.backends._attachment_limits import total_problem
from processpype.communications.backends._retry import backoff_delay
from processpype.communications.backends._smtp_failures import (
    SMTPFailure,
    classify,
    is_temporary,
    reply_text,
)
from processpype.communications.backends._smtp_message import (
    envelope_address,
    format_address,
    render_message,
)
from processpype.communications.backends._smtp_transaction import (
    DIRECT_MIN_BYTES,
    is_prepared,
    send_prepared,
)
from processpype.communications.base import Communicator
from processpype.communications.delivery import IDEMPOTENCY_KEY, DeliveryResult
from processpype.config.models import EmailCommunicatorConfig
from processpype.foundation.errors import BackendStartError, SendError
from processpype.foundation.models import OutgoingMessage

__all__ = ["EmailCommunicator"]

logger = logging.getLogger("processpype.communications.email")


@functools.cache
def _default_local_hostname() -> str:
    """The name sent in EHLO when ``local_hostname`` is not set.

    ``socket.gethostname()`` answers at once, unlike ``getfqdn()`` (aiosmtplib's
    default), which can stall for seconds on a host with slow reverse DNS.
    """
    name = socket.gethostname().strip()
    if name and name.isascii() and all(33 <= ord(char) < 127 for char in name):
        return name
    return "localhost"


class _StepFailed(Exception):
    """Internal: a connection step failed; the cause is the library's error."""

    def __init__(self, step: str) -> None:
        super().__init__(step)
        self.step = step


class _Undetermined(Exception):
    """Internal: the attempt's deadline passed during the transaction; it may have gone out."""

    def __init__(self, deadline: float) -> None:
        super().__init__(f"no complete answer within {deadline:g} s (attempt_timeout)")
        self.deadline = deadline


@dataclass(frozen=True)
class _Outgoing:
    """A message ready for SMTP: rendered once, so every retry resends the same Message-ID."""

    data: bytes
    sender: str
    recipients: tuple[str, ...]
    mail_options: tuple[str, ...]


class EmailCommunicator(Communicator):
    """Send messages as email through one reused SMTP connection (aiosmtplib)."""

    def __init__(self, name: str, config: EmailCommunicatorConfig) -> None:
        super().__init__(name, config)
        self._email_config = config
        self._client: aiosmtplib.SMTP | None = None
        self._lock: asyncio.Lock | None = None
        self._tls_context: ssl.SSLContext | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sent_on_connection = 0
        self._connections_opened = 0
        self._cut_off = 0  # bumped when stop() gives up waiting: earlier sends then fail
        self._warned_no_recipients = False
        # An address: EmailCommunicatorConfig refuses a from_address without one.
        self._sender = envelope_address(config.from_address)
        self._from_header = format_address(config.from_address)
        self._local_hostname = config.local_hostname or _default_local_hostname()
        domain = self._sender.rpartition("@")[2]
        self._message_id_domain = domain or self._local_hostname
        if config.password.get_secret_value() and not config.username:
            logger.warning(
                "%s: password is set but username is empty, so no AUTH is attempted", name
            )

    def __repr__(self) -> str:
        config = self._email_config
        return (
            f"EmailCommunicator(name={self.name!r}, server={config.host}:{config.port}, "
            f"started={self.is_started})"
        )

    @property
    def server(self) -> str:
        """The SMTP server as ``host:port``."""
        return f"{self._email_config.host}:{self._email_config.port}"

    @property
    def connected(self) -> bool:
        """True while an SMTP connection is open."""
        return self._client is not None and self._client.is_connected

    @property
    def connections_opened(self) -> int:
        """How many SMTP connections this backend has opened so far."""
        return self._connections_opened

    # -- lifecycle ------------------------------------------------------------------

    async def start(self) -> None:
        """Connect, upgrade to TLS and log in; raise ``BackendStartError`` if that fails.

        Sends after a failed start connect on their own, so mail still goes out once
        the server is reachable.
        """
        lock = self._lock_for_running_loop()
        async with lock:
            if not self.connected:
                try:
                    await self._connect()
                except _StepFailed as failed:
                    failure = self._classify(failed.__cause__ or failed, failed.step)
                    raise BackendStartError(
                        f"email backend {self.name!r} cannot start: {failure.step} at "
                        f"{self.server} failed: {failure.reason}",
                        backend=self.name,
                    ) from failed.__cause__
        self._started = True

    async def stop(self) -> None:
        """Wait (up to ``timeout``) for the message being sent, then QUIT and close."""
        self._started = False
        lock = self._lock
        if lock is None or self._loop is not _running_loop():
            self._discard_client()
            return
        try:
            async with asyncio.timeout(self._email_config.timeout):
                await lock.acquire()
        except TimeoutError:
            logger.warning("%s: a send was still running at stop; closing anyway", self.name)
            self._cut_off += 1
            self._discard_client()
            return
        try:
            await self._quit()
        finally:
            lock.release()

    async def flush(self, timeout: float | None = None) -> bool:
        """Wait until the sends already handed over are done; True when they finished."""
        lock = self._lock
        # Not "not lock.locked()": right after a release the lock reads unlocked while
        # the next send, already woken, has yet to take it. Taking it queues behind them.
        if lock is None or self._loop is not _running_loop():
            return True
        try:
            async with asyncio.timeout(timeout):
                async with lock:
                    pass
        except TimeoutError:
            return False
        return True

    # -- sending --------------------------------------------------------------------

    async def send(self, message: OutgoingMessage) -> None:
        """Send ``message`` as an email; raise ``SendError`` when it did not go out."""
        await self.deliver(message)

    async def deliver(self, message: OutgoingMessage) -> DeliveryResult:
        """Send ``message`` and report delivered (with attempts), skipped, or raise.

        Raises ``SendError`` (``permanent`` set for a 5xx reply, bad input or a TLS or
        login problem) when the message did not go out.
        """
        outgoing = self._build(message)
        if outgoing is None:
            reason = (
                "no recipients: set metadata['recipients'] on the message or "
                "default_recipients in the config"
            )
            log = logger.debug if self._warned_no_recipients else logger.warning
            self._warned_no_recipients = True
            log("%s: message for label %r skipped: %s", self.name, message.label, reason)
            return DeliveryResult.skipped(self.name, reason)
        attempts, refused = await self._transmit(outgoing)
        if refused:
            detail = ", ".join(
                f"{address} ({reply_text(reply.code, reply.message)})"
                for address, reply in refused.items()
            )
            text = f"delivered, but the server refused some recipients: {detail}"
            logger.warning("%s: %s", self.name, text)
            return DeliveryResult(
                backend=self.name, status="delivered", error=text, attempts=attempts
            )
        return DeliveryResult.delivered(self.name, attempts=attempts)

    def _build(self, message: OutgoingMessage) -> _Outgoing | None:
        recipients = self._recipients(message)
        if not recipients:
            return None
        subject = message.subject or f"[{message.severity.value.upper()}] Notification"
        if "\r" in subject or "\n" in subject:
            raise self._bad_input("the subject contains a line break (CR or LF)")
        envelope: list[str] = []
        for recipient in recipients:
            if "\r" in recipient or "\n" in recipient:
                raise self._bad_input(f"recipient {recipient!r} contains a line break (CR or LF)")
            address = envelope_address(recipient)
            if "@" not in address:
                problem = f"recipient {recipient!r} is not an email address"
                if "," in recipient:
                    problem += (
                        ' (quote a display name with a comma: "Doe, Jane" <jane@example.com>)'
                    )
                raise self._bad_input(problem)
            envelope.append(address)
        if message.attachments:
            too_big = total_problem(
                message.attachments, self._email_config.max_attachment_bytes, "max_attachment_bytes"
            )
            if too_big is not None:
                raise self._bad_input(too_big)
        data = render_message(
            from_header=self._from_header,
            to_headers=[format_address(recipient) for recipient in recipients],
            subject=subject,
            body=message.message,
            date=formatdate(localtime=True),
            message_id=_stable_message_id(message, self._message_id_domain)
            or make_msgid(domain=self._message_id_domain),
            attachments=message.attachments,
        )
        addresses = tuple(dict.fromkeys(envelope))
        # Internationalised addresses need the server's SMTPUTF8 extension.
        utf8 = not (self._sender.isascii() and all(a.isascii() for a in addresses))
        return _Outgoing(data, self._sender, addresses, ("SMTPUTF8",) if utf8 else ())

    def _recipients(self, message: OutgoingMessage) -> list[str]:
        raw: Any = message.metadata.get("recipients")
        if raw is None or raw == [] or raw == "":
            return list(self._email_config.default_recipients)
        if isinstance(raw, str):
            items = raw.split(",")
        elif isinstance(raw, list | tuple) and all(isinstance(item, str) for item in raw):
            items = list(raw)
        else:
            raise self._bad_input(
                "metadata['recipients'] must be a list of addresses or a comma-separated "
                f"string, not {type(raw).__name__}"
            )
        recipients = [item.strip() for item in items if item.strip()]
        return recipients or list(self._email_config.default_recipients)

    def _bad_input(self, problem: str) -> SendError:
        return SendError(
            f"email backend {self.name!r}: {problem}; nothing was sent",
            backend=self.name,
            attempts=0,
            permanent=True,
        )

    async def _transmit(
        self, outgoing: _Outgoing
    ) -> tuple[int, dict[str, aiosmtplib.SMTPResponse]]:
        # Taking the lock is the first await: it fixes this message's place in the order.
        lock = self._lock_for_running_loop()
        cut_off = self._cut_off
        async with lock:
            return await self._transmit_locked(outgoing, cut_off)

    async def _transmit_locked(
        self, outgoing: _Outgoing, cut_off: int
    ) -> tuple[int, dict[str, aiosmtplib.SMTPResponse]]:
        config = self._email_config
        attempts = 0
        counted = 0
        reconnected_for_free = False
        while True:
            if self._cut_off != cut_off:
                # stop() gave up waiting and closed the connection: do not open another.
                raise SendError(
                    f"email backend {self.name!r}: stopped before the message to "
                    f"{self.server} was sent",
                    backend=self.name,
                    attempts=attempts,
                )
            attempts += 1
            reused = self.connected and self._sent_on_connection > 0
            try:
                refused = await self._send_once(outgoing)
            except _Undetermined as undetermined:
                raise SendError(
                    f"email backend {self.name!r}: no complete answer from {self.server} "
                    f"within {undetermined.deadline:g} s (attempt_timeout); not retried, "
                    "since the server may have accepted the message",
                    backend=self.name,
                    attempts=attempts,
                    permanent=False,
                ) from undetermined
            except _StepFailed as failed:
                error: BaseException = failed.__cause__ or failed
                failure = self._classify(error, failed.step)
            else:
                self._sent_on_connection += 1
                if any(is_temporary(reply.code) for reply in refused.values()):
                    retried, refused = await self._retry_refused(outgoing, refused, cut_off)
                    attempts += retried
                return attempts, refused
            if failure.drop_connection:
                self._discard_client()
            if failure.disconnected and reused and not reconnected_for_free:
                # A reused connection the server closed (idle timeout, restart): open a
                # new one at once, without spending one of the message's attempts.
                reconnected_for_free = True
                logger.info("%s: %s closed the connection; reconnecting", self.name, self.server)
                continue
            counted += 1
            if not failure.temporary or counted >= config.max_attempts:
                raise SendError(
                    f"email backend {self.name!r}: {failure.step} at {self.server} failed "
                    f"after {attempts} attempt{'s' if attempts != 1 else ''}: {failure.reason}",
                    backend=self.name,
                    attempts=attempts,
                    permanent=not failure.temporary,
                ) from error
            delay = backoff_delay(counted, config.retry_base_delay, config.max_retry_delay)
            logger.warning(
                "%s: %s at %s failed (%s); retry %d of %d in %.2fs",
                self.name,
                failure.step,
                self.server,
                failure.reason,
                counted,
                config.max_attempts - 1,
                delay,
            )
            await asyncio.sleep(delay)

    async def _retry_refused(
        self,
        outgoing: _Outgoing,
        refused: dict[str, aiosmtplib.SMTPResponse],
        cut_off: int,
    ) -> tuple[int, dict[str, aiosmtplib.SMTPResponse]]:
        """Send ``outgoing`` again to the recipients refused with a 4xx reply, alone.

        Each try waits the backoff of a failed message, up to ``max_attempts`` tries in
        all (the first transaction counts). Returns the number of extra transactions and
        the recipients still refused, with the server's last reply to each.
        """
        config = self._email_config
        final, waiting = _by_permanence(refused)
        tries = 1
        while waiting and tries < config.max_attempts and self._cut_off == cut_off:
            delay = backoff_delay(tries, config.retry_base_delay, config.max_retry_delay)
            logger.warning(
                "%s: %s refused %s for now; retry %d of %d in %.2fs",
                self.name,
                self.server,
                ", ".join(f"{a} ({reply_text(r.code, r.message)})" for a, r in waiting.items()),
                tries,
                config.max_attempts - 1,
                delay,
            )
            await asyncio.sleep(delay)
            if self._cut_off != cut_off:  # stop() gave up waiting: no new transaction
                break
            tries += 1
            try:
                again = await self._send_once(
                    dataclasses.replace(outgoing, recipients=tuple(waiting))
                )
            except _Undetermined:
                break  # may have gone out: reported with the refusals they had
            except _StepFailed as failed:
                error: BaseException = failed.__cause__ or failed
                if not isinstance(error, aiosmtplib.SMTPRecipientsRefused):
                    failure = self._classify(error, failed.step)
                    if failure.drop_connection:
                        self._discard_client()
                    if failure.temporary:
                        continue
                    break  # reported with the refusals they had
                again = {
                    r.recipient: aiosmtplib.SMTPResponse(r.code, r.message)
                    for r in error.recipients
                }
            else:
                self._sent_on_connection += 1
            # Recipients missing from ``again`` were accepted this time.
            refused_again, waiting = _by_permanence(again)
            final.update(refused_again)
        return tries - 1, final | waiting

    async def _send_once(self, outgoing: _Outgoing) -> dict[str, aiosmtplib.SMTPResponse]:
        # aiosmtplib's timeout bounds each read: a server that trickles its replies a
        # line at a time would hold the message (and all behind it) without end.
        deadline = self._email_config.attempt_deadline()
        connecting = True
        try:
            async with asyncio.timeout(deadline):
                client = self._client
                if client is None or not client.is_connected:
                    self._discard_client()
                    client = await self._connect()
                connecting = False
                try:
                    if len(outgoing.data) >= DIRECT_MIN_BYTES and is_prepared(outgoing.data):
                        # A large message (attachments): without sendmail's copies of it.
                        refused = await send_prepared(
                            client,
                            outgoing.sender,
                            outgoing.recipients,
                            outgoing.data,
                            mail_options=outgoing.mail_options,
                        )
                    else:
                        refused, _ = await client.sendmail(
                            outgoing.sender,
                            list(outgoing.recipients),
                            outgoing.data,
                            mail_options=list(outgoing.mail_options),
                        )
                except asyncio.CancelledError:
                    # Cancelled mid-transaction: the server may still wait for the rest
                    # of the data, so this connection cannot carry the next message.
                    self._discard_client()
                    raise
                except Exception as exc:
                    raise _StepFailed("sending the message") from exc
        except TimeoutError as exc:  # the deadline (aiosmtplib's own are wrapped above)
            self._discard_client()
            if connecting:  # nothing was sent yet: safe to try again
                raise _StepFailed("connect") from aiosmtplib.SMTPConnectTimeoutError(
                    f"no complete answer within {deadline:g} s (attempt_timeout)"
                )
            raise _Undetermined(deadline) from exc
        return refused

    # -- connection -----------------------------------------------------------------

    async def _connect(self) -> aiosmtplib.SMTP:
        config = self._email_config
        tls_context: ssl.SSLContext | None = None
        if config.use_tls or config.start_tls:
            try:
                tls_context = await self._get_tls_context()
            except (OSError, ValueError) as exc:
                raise _StepFailed("TLS setup") from exc
        client = aiosmtplib.SMTP(
            hostname=config.host,
            port=config.port,
            timeout=config.timeout,
            use_tls=config.use_tls,
            # Never None: aiosmtplib would then upgrade whenever the server offers it.
            start_tls=False,
            tls_context=tls_context,
            local_hostname=self._local_hostname,
        )
        step = "connect"
        try:
            await client.connect()
            if config.start_tls:
                step = "STARTTLS"
                await client.starttls()
            if config.username:
                step = "AUTH"
                await client.login(config.username, config.password.get_secret_value())
        except asyncio.CancelledError:
            client.close()  # cancelled during STARTTLS or AUTH: do not leave it open
            raise
        except Exception as exc:
            client.close()
            raise _StepFailed(step) from exc
        self._client = client
        self._sent_on_connection = 0
        self._connections_opened += 1
        logger.debug("%s: connected to %s", self.name, self.server)
        return client

    async def _get_tls_context(self) -> ssl.SSLContext:
        if self._tls_context is None:
            # Reading the CA files is disk work: keep it off the event loop, once.
            self._tls_context = await asyncio.to_thread(
                _client_tls_context,
                self._email_config.validate_certs,
                self._email_config.cert_bundle,
            )
        return self._tls_context

    async def _quit(self) -> None:
        client, self._client = self._client, None
        if client is None:
            return
        if client.is_connected:
            try:
                await client.quit()
            except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
                logger.debug("%s: QUIT failed: %s", self.name, exc)
        client.close()

    def _discard_client(self) -> None:
        client, self._client = self._client, None
        if client is None:
            return
        try:
            client.close()
        except RuntimeError:
            # Its event loop is closed (the backend was not stopped before the loop
            # ended): end the TCP session at least; the socket goes with the transport.
            transport = client.transport
            sock = transport.get_extra_info("socket") if transport is not None else None
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def _lock_for_running_loop(self) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        if self._lock is None or self._loop is not loop:
            # A connection and a lock belong to the loop that made them: start afresh
            # when the backend is used from another loop (a new asyncio.run, a test).
            self._discard_client()
            self._lock = asyncio.Lock()
            self._loop = loop
        return self._lock

    def _classify(self, error: BaseException, step: str) -> SMTPFailure:
        config = self._email_config
        return classify(
            error,
            step,
            use_tls=config.use_tls,
            port=config.port,
            username=config.username,
            start_tls=config.start_tls,
        )


def _client_tls_context(validate_certs: bool, cert_bundle: str | None) -> ssl.SSLContext:
    """A client context that checks the server against the system CAs and ``cert_bundle``."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    if not validate_certs:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if cert_bundle:
        path = Path(cert_bundle).expanduser()
        if not path.is_file():
            raise ValueError(f"cert_bundle {cert_bundle!r} is not a readable file")
        try:
            context.load_verify_locations(cafile=str(path))
        except ssl.SSLError:
            raise
        except OSError as exc:
            raise ValueError(f"cert_bundle {cert_bundle!r} cannot be read: {exc}") from exc
    return context


def _by_permanence(
    refused: dict[str, aiosmtplib.SMTPResponse],
) -> tuple[dict[str, aiosmtplib.SMTPResponse], dict[str, aiosmtplib.SMTPResponse]]:
    """The refused recipients split: those refused for good (5xx), those for now (4xx)."""
    final: dict[str, aiosmtplib.SMTPResponse] = {}
    waiting: dict[str, aiosmtplib.SMTPResponse] = {}
    for address, reply in refused.items():
        (waiting if is_temporary(reply.code) else final)[address] = reply
    return final, waiting


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


_MESSAGE_ID_SAFE = re.compile(r"[A-Za-z0-9._+-]{1,64}")


def _stable_message_id(message: OutgoingMessage, domain: str) -> str | None:
    """``<key@domain>`` from the message's idempotency key, so a resend keeps its Message-ID."""
    key = message.metadata.get(IDEMPOTENCY_KEY)
    if not isinstance(key, str) or not key:
        return None
    local = key if _MESSAGE_ID_SAFE.fullmatch(key) else hashlib.sha256(key.encode()).hexdigest()
    return f"<{local}@{domain}>"
