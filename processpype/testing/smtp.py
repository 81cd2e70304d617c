"""``SMTPTestServer``: a real SMTP server (aiosmtpd) on 127.0.0.1 for tests.

The server runs on its own thread and event loop, so sync tests and async tests (in any
pytest-asyncio mode) use it alike. It binds port 0 and exposes the real ``port``; keeps
what it received as parsed ``ReceivedEmail`` objects (``EmailMessage`` with ``text`` and
``attachments``) and as ``SMTPEnvelope`` records;
speaks plain SMTP, STARTTLS or implicit TLS with a throwaway CA made by trustme; checks
a username and password when ``auth`` is given; and fails on demand (``fail_next``,
``disconnect_next``, ``refuse_recipients``, ``stall_next``, ``trickle_next``,
``huge_reply_next``, ``drop_after``, and ``stop()`` / ``restart()`` on the same port for
an outage).

Needs the ``testing`` extra (aiosmtpd, trustme).
"""

from __future__ import annotations

import asyncio
import email.policy
import hmac
import logging
import shutil
import ssl
import tempfile
import threading
import weakref
from dataclasses import dataclass
from email.parser import BytesParser
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Self

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session, TLSSetupException

from processpype.testing._faults import DropAfter
from processpype.testing._lifecycle import StartStop
from processpype.testing._received_email import ReceivedAttachment, ReceivedEmail

if TYPE_CHECKING:
    import trustme

    from processpype.config.models import EmailCommunicatorConfig

__all__ = ["ReceivedAttachment", "ReceivedEmail", "SMTPEnvelope", "SMTPTestServer", "TLSMode"]

TLSMode = Literal["starttls", "implicit"]
"""How the test server speaks TLS: upgraded with STARTTLS, or from the first byte."""

_TLS_MODES: tuple[TLSMode, ...] = ("starttls", "implicit")
_SERVER_HOSTNAME = "smtp.processpype.test"
_PARSER = BytesParser(_class=ReceivedEmail, policy=email.policy.default)


class _SkipLoginDataNotice(logging.Filter):
    """Drop aiosmtpd's notice that it logs on every successful AUTH (not a user concern)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "login_data is deprecated" not in record.getMessage()


_AIOSMTPD_LOG = logging.getLogger("mail.log")
if not any(isinstance(f, _SkipLoginDataNotice) for f in _AIOSMTPD_LOG.filters):
    _AIOSMTPD_LOG.addFilter(_SkipLoginDataNotice())


@dataclass(frozen=True)
class SMTPEnvelope:
    """One accepted mail transaction, as the server saw it."""

    mail_from: str
    """The envelope sender (``MAIL FROM``)."""
    rcpt_tos: tuple[str, ...]
    """The accepted envelope recipients (``RCPT TO``), in order."""
    content: bytes
    """The raw message as received (CRLF line ends)."""
    tls: bool
    """True when the transaction ran over TLS (STARTTLS or implicit)."""
    username: str | None
    """The name the client authenticated as, or None without AUTH."""


class _Faults:
    """Failures scripted by the test; read by the server thread (hence the lock)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.fail_codes: list[tuple[int, str]] = []
        self.disconnects = 0
        # address -> (code, text, refusals left; None: until clear())
        self.refused: dict[str, tuple[int, str, int | None]] = {}
        # Slow or broken replies to DATA, one entry per message: ("stall", 0, 0),
        # ("trickle", lines or 0 for no end, interval), ("huge", size, 0).
        self.replies: list[tuple[str, int, float]] = []
        self.drop = DropAfter()  # drop_after()

    def take_reply(self) -> tuple[str, int, float] | None:
        with self.lock:
            return self.replies.pop(0) if self.replies else None

    def take_drop(self) -> bool:
        with self.lock:
            return self.drop.take()

    def take_failure(self) -> tuple[int, str] | None:
        with self.lock:
            return self.fail_codes.pop(0) if self.fail_codes else None

    def take_disconnect(self) -> bool:
        with self.lock:
            if self.disconnects > 0:
                self.disconnects -= 1
                return True
            return False

    def refusal_for(self, address: str) -> tuple[int, str] | None:
        with self.lock:
            key = address.lower()
            refusal = self.refused.get(key)
            if refusal is None:
                return None
            code, text, left = refusal
            if left is not None:
                if left <= 1:
                    del self.refused[key]
                else:
                    self.refused[key] = (code, text, left - 1)
            return code, text

    def clear(self) -> None:
        with self.lock:
            self.fail_codes.clear()
            self.disconnects = 0
            self.refused.clear()
            self.replies.clear()
            self.drop.clear()


class _Handler:
    """aiosmtpd hooks: enforce AUTH, apply scripted faults, record accepted mail."""

    def __init__(self, owner: SMTPTestServer) -> None:
        self._owner = owner

    async def handle_MAIL(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        mail_options: list[str],
    ) -> str:
        # AUTH is enforced here rather than with aiosmtpd's auth_required, whose
        # combination with auth_require_tls=False emits a UserWarning that -W error
        # turns into a failure.
        if self._owner.auth is not None and not session.authenticated:
            return "530 5.7.0 Authentication required"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        refusal = self._owner._faults.refusal_for(address)
        if refusal is not None:
            code, text = refusal
            return f"{code} {text}"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        owner = self._owner
        reply = owner._faults.take_reply()
        if reply is not None:
            kind, amount, interval = reply
            if kind == "stall":
                # Never answer: the client's deadline (or the server's stop) ends it.
                await asyncio.Event().wait()
            lines = 0
            while kind == "trickle" and (amount == 0 or lines < amount):
                # A valid multi-line reply that never finishes quickly: every line comes
                # well inside a per-read timeout.
                await server.push("250-still working (SMTPTestServer trickle)")
                lines += 1
                await asyncio.sleep(interval)
            if kind == "huge":
                line = "250-" + "x" * 990
                for _ in range(max(1, amount // (len(line) + 2))):
                    await server.push(line)
        if owner._faults.take_drop() or owner._faults.take_disconnect():
            # Drop the connection after the data arrived but before the reply: the
            # client cannot tell whether the message went out, the worst case.
            transport = server.transport
            if isinstance(transport, asyncio.WriteTransport):
                transport.abort()
            return "421 4.4.2 Connection dropped by SMTPTestServer"
        failure = owner._faults.take_failure()
        if failure is not None:
            code, text = failure
            return f"{code} {text}"
        content = envelope.original_content or b""
        login = getattr(session, "auth_data", None)
        username = (
            login.login.decode("utf-8", "replace") if isinstance(login, LoginPassword) else None
        )
        record = SMTPEnvelope(
            mail_from=envelope.mail_from or "",
            rcpt_tos=tuple(envelope.rcpt_tos),
            content=bytes(content),
            tls=owner.tls == "implicit" or session.ssl is not None,
            username=username,
        )
        owner._record(record)
        return "250 2.0.0 OK: queued"

    async def handle_exception(self, error: Exception) -> str:
        # A client that gives up on TLS or hangs up is the client's story, not a fault
        # of the server; anything else is a bug worth failing the test for.
        if not isinstance(error, TLSSetupException | ssl.SSLError | ConnectionError):
            self._owner._record_error(error)
        return f"500 5.0.0 SMTPTestServer error: {type(error).__name__}"


class _Controller(Controller):
    """A Controller that binds port 0 for real and drops live connections on stop."""

    def __init__(self, owner: SMTPTestServer, handler: _Handler, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self._owner = owner

    def _create_server(self) -> Any:
        return self._bind()

    async def _bind(self) -> asyncio.AbstractServer:
        server = await self.loop.create_server(
            self._factory_invoker,
            host=self.hostname,
            port=self.port,
            ssl=self.ssl_context,
        )
        # Controller.start() checks readiness by connecting to self.port: with port 0
        # that would fail, so read the real port before the check runs.
        self.port = server.sockets[0].getsockname()[1]
        return server

    def factory(self) -> SMTP:
        self._owner._count_connection()
        return SMTP(self.handler, **self.SMTP_kwargs)

    def cancel_tasks(self, stop_loop: bool = True) -> None:
        # An outage drops open connections too; asyncio's server.close() alone keeps
        # them, and wait_closed() would then wait for the client to leave.
        server = self.server
        if server is not None:
            server.close()
            server.abort_clients()
        super().cancel_tasks(stop_loop)


def _error_reply(code: int, message: str | None, temporary: str, permanent: str) -> str:
    """The text of a scripted error reply: ``message``, or the default for ``code``'s class."""
    if not 400 <= code <= 599:
        raise ValueError(f"code must be an SMTP error code from 400 to 599, not {code}")
    return message or (temporary if code < 500 else permanent)


def _remove_tree(path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)


class SMTPTestServer(StartStop):
    """A real SMTP server on its own thread, for tests; a context manager.

    ``tls`` is None (plain), ``"starttls"`` or ``"implicit"``; ``auth`` a
    ``(username, password)`` pair the server requires before ``MAIL FROM``; ``port=0``
    picks a free port (read it from ``port`` after ``start()``). With ``record=False``
    the server only counts messages (``message_count``), for load tests.
    """

    def __init__(
        self,
        *,
        tls: TLSMode | None = None,
        auth: tuple[str, str] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        record: bool = True,
    ) -> None:
        if tls is not None and tls not in _TLS_MODES:
            raise ValueError(f"tls must be None, 'starttls' or 'implicit', not {tls!r}")
        if auth is not None and (len(auth) != 2 or not all(isinstance(a, str) for a in auth)):
            raise ValueError("auth must be a (username, password) pair of strings")
        if not 0 <= port <= 65535:
            raise ValueError(f"port must be between 0 and 65535, not {port}")
        self.tls: TLSMode | None = tls
        self.auth = auth
        self.record = record
        self._host = host
        self._port = port
        self._controller: _Controller | None = None
        self._faults = _Faults()
        self._condition = threading.Condition()
        self._messages: list[ReceivedEmail] = []
        self._envelopes: list[SMTPEnvelope] = []
        self._count = 0
        self._connections = 0
        self._errors: list[Exception] = []
        self._ca: trustme.CA | None = None
        self._server_cert: trustme.LeafCert | None = None
        self._tempdir: str | None = None
        self._finalizer: weakref.finalize[[str], SMTPTestServer] | None = None
        if tls is not None:
            self._make_certificates()

    def __repr__(self) -> str:
        state = "running" if self.is_running else "stopped"
        return (
            f"SMTPTestServer(host={self._host!r}, port={self._port}, tls={self.tls!r}, "
            f"auth={'on' if self.auth else 'off'}, {state})"
        )

    # -- lifecycle ------------------------------------------------------------------

    def _finish(self, *, failed: bool) -> None:
        # A `with` block also deletes the certificate files, and fails a test that
        # passed when the server met an error while serving it.
        self.close()
        if not failed:
            self.raise_errors()

    @property
    def is_running(self) -> bool:
        """True between ``start()`` and ``stop()``."""
        return self._controller is not None

    def start(self) -> Self:
        """Start serving (on ``port``; a free one when it is 0); returns the server."""
        if self._controller is not None:
            raise RuntimeError(f"{self!r} is already running")
        controller = _Controller(
            self,
            _Handler(self),
            hostname=self._host,
            port=self._port,
            ready_timeout=10.0,
            server_hostname=_SERVER_HOSTNAME,
            **self._smtp_settings(),
        )
        try:
            controller.start()
        except BaseException:
            controller.stop(no_assert=True)
            raise
        self._port = controller.port
        with self._condition:
            # The readiness check of Controller.start() was a connection too.
            self._connections = 0
        self._controller = controller
        return self

    def stop(self) -> None:
        """Stop serving and drop open connections (no error when not running)."""
        controller, self._controller = self._controller, None
        if controller is not None:
            controller.stop()

    def restart(self) -> Self:
        """Stop if running, then serve again on the same port (recovery after an outage)."""
        self.stop()
        return self.start()

    def close(self) -> None:
        """Stop serving and delete the certificate files."""
        self.stop()
        if self._finalizer is not None:
            self._finalizer()
            self._finalizer = None
            self._tempdir = None

    def _smtp_settings(self) -> dict[str, Any]:
        settings: dict[str, Any] = {}
        if self.tls is not None:
            context = self._server_ssl_context()
            if self.tls == "starttls":
                settings["tls_context"] = context
            else:
                settings["ssl_context"] = context
        if self.auth is not None:
            settings["authenticator"] = self._authenticate
            # STARTTLS: AUTH only after the upgrade, like a real submission server.
            # Plain and implicit TLS need auth_require_tls=False to accept AUTH at all
            # (aiosmtpd does not count implicit TLS as TLS for AUTH).
            settings["auth_require_tls"] = self.tls == "starttls"
        return settings

    # -- TLS ------------------------------------------------------------------------

    def _make_certificates(self) -> None:
        import trustme

        self._ca = trustme.CA()
        identities = dict.fromkeys([self._host, "127.0.0.1", "localhost", _SERVER_HOSTNAME])
        self._server_cert = self._ca.issue_cert(*identities)

    def _server_ssl_context(self) -> ssl.SSLContext:
        assert self._server_cert is not None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._server_cert.configure_cert(context)
        return context

    @property
    def ca_cert_path(self) -> str | None:
        """Path of a PEM file with the CA that signed the server's certificate (None: no TLS)."""
        if self._ca is None:
            return None
        if self._tempdir is None:
            self._tempdir = tempfile.mkdtemp(prefix="processpype-smtp-")
            self._finalizer = weakref.finalize(self, _remove_tree, self._tempdir)
        path = Path(self._tempdir) / "ca.pem"
        if not path.exists():
            self._ca.cert_pem.write_to_path(str(path))
        return str(path)

    def client_ssl_context(self) -> ssl.SSLContext | None:
        """An ``SSLContext`` that trusts this server's certificate (None without TLS)."""
        if self._ca is None:
            return None
        context = ssl.create_default_context()
        self._ca.configure_trust(context)
        return context

    # -- auth -----------------------------------------------------------------------

    def _authenticate(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        mechanism: str,
        auth_data: Any,
    ) -> AuthResult:
        if self.auth is None or not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        username, password = self.auth
        ok_user = hmac.compare_digest(auth_data.login, username.encode("utf-8"))
        ok_password = hmac.compare_digest(auth_data.password, password.encode("utf-8"))
        if ok_user and ok_password:
            return AuthResult(success=True, auth_data=auth_data)
        return AuthResult(success=False, handled=False)

    # -- address --------------------------------------------------------------------

    @property
    def host(self) -> str:
        """The address the server listens on."""
        return self._host

    @property
    def port(self) -> int:
        """The port the server listens on (the real one after ``start()``)."""
        return self._port

    def email_config(self, **overrides: Any) -> EmailCommunicatorConfig:
        """An ``EmailCommunicatorConfig`` pointing at this server; ``overrides`` win.

        Fills host, port, TLS mode, CA bundle, credentials, a sender and one default
        recipient, and test-friendly timeout and retry delays.
        """
        from processpype.config.models import EmailCommunicatorConfig

        values: dict[str, Any] = {
            "type": "email",
            "host": self._host,
            "port": self._port,
            "from_address": "processpype@example.com",
            "default_recipients": ["ops@example.com"],
            "use_tls": self.tls == "implicit",
            "start_tls": self.tls == "starttls",
            "local_hostname": "client.processpype.test",
            "timeout": 5.0,
            "max_attempts": 3,
            "retry_base_delay": 0.01,
        }
        if self.tls is not None:
            values["cert_bundle"] = self.ca_cert_path
        if self.auth is not None:
            values["username"], values["password"] = self.auth
        values.update(overrides)
        return EmailCommunicatorConfig.model_validate(values)

    # -- what arrived ---------------------------------------------------------------

    def _count_connection(self) -> None:
        with self._condition:
            self._connections += 1

    def _record(self, envelope: SMTPEnvelope) -> None:
        message = _PARSER.parsebytes(envelope.content) if self.record else None
        assert message is None or isinstance(message, ReceivedEmail)  # the parser's _class
        with self._condition:
            self._count += 1
            if message is not None:
                self._envelopes.append(envelope)
                self._messages.append(message)
            self._condition.notify_all()

    def _record_error(self, error: Exception) -> None:
        with self._condition:
            self._errors.append(error)

    @property
    def messages(self) -> list[ReceivedEmail]:
        """Every accepted message, parsed, in arrival order (a copy)."""
        with self._condition:
            return list(self._messages)

    @property
    def envelopes(self) -> list[SMTPEnvelope]:
        """Every accepted transaction (sender, recipients, raw content), in order."""
        with self._condition:
            return list(self._envelopes)

    @property
    def message_count(self) -> int:
        """How many messages were accepted (also counted with ``record=False``)."""
        with self._condition:
            return self._count

    @property
    def connection_count(self) -> int:
        """How many client connections were opened since ``start()`` or ``clear()``."""
        with self._condition:
            return self._connections

    @property
    def errors(self) -> list[Exception]:
        """Exceptions raised inside the server while handling clients."""
        with self._condition:
            return list(self._errors)

    def raise_errors(self) -> None:
        """Raise the first exception the server met while handling clients, if any."""
        with self._condition:
            errors = list(self._errors)
        if errors:
            raise AssertionError(f"SMTPTestServer failed while serving: {errors!r}") from errors[0]

    def wait_for_messages(self, count: int, timeout: float = 5.0) -> list[ReceivedEmail]:
        """Block until at least ``count`` messages arrived; return them all.

        Raises ``TimeoutError`` saying how many arrived (and their subjects) otherwise.
        """
        with self._condition:
            if not self._condition.wait_for(lambda: self._count >= count, timeout):
                subjects = [m["Subject"] for m in self._messages[:10]]
                raise TimeoutError(
                    f"SMTPTestServer on port {self._port}: expected {count} messages "
                    f"within {timeout}s, got {self._count}; subjects: {subjects!r}"
                )
            return list(self._messages)

    async def wait_for_messages_async(
        self, count: int, timeout: float = 5.0
    ) -> list[ReceivedEmail]:
        """``wait_for_messages`` for async tests: waits without blocking the event loop."""
        return await asyncio.to_thread(self.wait_for_messages, count, timeout)

    def clear(self) -> None:
        """Forget received messages, connection counts, errors and pending faults."""
        with self._condition:
            self._messages.clear()
            self._envelopes.clear()
            self._errors.clear()
            self._count = 0
            self._connections = 0
        self._faults.clear()

    # -- faults ---------------------------------------------------------------------

    def fail_next(self, count: int = 1, code: int = 451, message: str | None = None) -> None:
        """Answer the next ``count`` messages' DATA with ``code`` (4xx temporary, 5xx permanent)."""
        text = _error_reply(
            code,
            message,
            "4.3.0 Temporary failure (SMTPTestServer)",
            "5.7.1 Message rejected (SMTPTestServer)",
        )
        if count < 1:
            raise ValueError(f"count must be at least 1, not {count}")
        with self._faults.lock:
            self._faults.fail_codes.extend([(code, text)] * count)

    def disconnect_next(self, count: int = 1) -> None:
        """Drop the connection during the DATA of the next ``count`` messages (not recorded)."""
        if count < 1:
            raise ValueError(f"count must be at least 1, not {count}")
        with self._faults.lock:
            self._faults.disconnects += count

    def stall_next(self, count: int = 1) -> None:
        """Never answer the DATA of the next ``count`` messages (until the client gives up)."""
        self._add_replies(count, ("stall", 0, 0.0))

    def trickle_next(
        self, count: int = 1, *, interval: float = 0.5, lines: int | None = None
    ) -> None:
        """Answer the next ``count`` messages' DATA one reply line every ``interval`` s.

        With ``lines`` the reply then ends with 250 and the message is accepted; without,
        it goes on until the client hangs up. Each line comes well inside a per-read
        timeout: only a deadline on the whole attempt ends it.
        """
        if interval < 0:
            raise ValueError(f"interval must be >= 0 seconds, not {interval}")
        if lines is not None and lines < 1:
            raise ValueError(f"lines must be at least 1 (or None: no end), not {lines}")
        self._add_replies(count, ("trickle", lines or 0, interval))

    def huge_reply_next(self, count: int = 1, *, size: int = 1_000_000) -> None:
        """Answer the next ``count`` messages' DATA with a multi-line reply of ``size`` bytes."""
        if size < 1:
            raise ValueError(f"size must be at least 1 byte, not {size}")
        self._add_replies(count, ("huge", size, 0.0))

    def drop_after(self, count: int) -> None:
        """Accept ``count`` more messages, then drop the connection during every later DATA.

        Until ``clear()``: a relay that goes away mid-run. Dropped messages are not recorded.
        """
        with self._faults.lock:
            self._faults.drop.arm(count)

    def _add_replies(self, count: int, reply: tuple[str, int, float]) -> None:
        if count < 1:
            raise ValueError(f"count must be at least 1, not {count}")
        with self._faults.lock:
            self._faults.replies.extend([reply] * count)

    def refuse_recipients(
        self,
        *addresses: str,
        code: int = 550,
        message: str | None = None,
        times: int | None = None,
    ) -> None:
        """Refuse ``RCPT TO`` for ``addresses`` (case-insensitive).

        Until ``clear()``, or, with ``times``, for that many ``RCPT TO`` of each address:
        ``refuse_recipients("busy@example.com", code=450, times=1)`` refuses it once.
        """
        text = _error_reply(
            code,
            message,
            "4.2.1 Mailbox busy, try again later (SMTPTestServer)",
            "5.1.1 Mailbox unavailable (SMTPTestServer)",
        )
        if times is not None and times < 1:
            raise ValueError(f"times must be at least 1 (or None: until clear()), not {times}")
        with self._faults.lock:
            for address in addresses:
                self._faults.refused[address.lower()] = (code, text, times)
