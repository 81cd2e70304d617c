"""Masking secrets: the one place that knows what a secret looks like and hides it.

Three jobs, one rule set:

- ``mask_value`` / ``mask_url`` turn configuration data into something safe to show
  (``check``, reprs): values under secret-looking keys (``*token*``, ``*key*``,
  ``*secret*``, ``password``, ...) become ``MASK``, recursively in lists and mappings; a
  URL keeps its scheme and host only; a password in a URL's userinfo is hidden.
- ``config_secrets`` lists the secret strings of a backend config (its ``SecretStr``
  fields, secret-looking extra keys of third-party backends, and the parts of a secret
  URL that a server may echo back: its path, query and token-like segments).
- ``register_secrets`` records them for as long as their backend lives; ``redact``
  replaces every registered secret in a text, and a log-record factory applies it to the
  records of processpype and of the libraries that work for it (httpx, httpcore,
  aiosmtplib, telethon, asyncio), DEBUG included, so a ``Location`` header or a request
  line never shows a token.
"""

from __future__ import annotations

import logging
import re
import threading
import weakref
from collections import Counter, deque
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

if TYPE_CHECKING:
    from pydantic import BaseModel

__all__ = [
    "MASK",
    "REDACTED_LOGGERS",
    "config_secrets",
    "is_secret_key",
    "mask_url",
    "mask_url_password",
    "mask_value",
    "redact",
    "register_secrets",
    "url_secrets",
]

MASK = "**********"
"""What a secret is replaced with."""

REDACTED_LOGGERS: tuple[str, ...] = (
    *("processpype", "httpx", "httpcore", "h11", "h2", "hpack"),
    *("aiosmtplib", "telethon", "asyncio", "redis"),
)
"""Loggers (and their children) whose records are searched for registered secrets."""

_SECRET_KEY = re.compile(
    r"token|key|secret|passw|pwd|credential|auth(?!or)|session|private|signature|cookie",
    re.IGNORECASE,
)
_URL_KEY = re.compile(r"url|uri|webhook|endpoint|dsn|href", re.IGNORECASE)
_URL = re.compile(r"\A[A-Za-z][A-Za-z0-9+.-]*://")
_MIN_SECRET = 4  # shorter strings are not masked in free text: they would garble it
_TOKEN_LIKE = re.compile(r"(?=.*\d)[^/]{6,}|[^/]{16,}")


def is_secret_key(key: object) -> bool:
    """True when a config key's name says its value is a secret (``api_key``, ``token``)."""
    return isinstance(key, str) and _SECRET_KEY.search(key) is not None


def mask_url(url: str) -> str:
    """``scheme://host[:port]/**********``: the path, query and userinfo often hold a token."""
    try:
        parts = urlsplit(url.strip())
        host = parts.hostname
        port = parts.port
    except ValueError:
        return MASK
    if not parts.scheme or not host:
        return MASK
    if ":" in host:
        host = f"[{host}]"
    where = f"{host}:{port}" if port else host
    return f"{parts.scheme}://{where}/{MASK}"


def mask_url_password(url: str) -> str:
    """``url`` with the password of its userinfo masked (``user:**********@host``).

    The rest is kept as written; a URL without a password is returned as is, and one
    whose userinfo cannot be parsed is masked whole.
    """
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return MASK
    if password is None:
        return url
    user = parts.username or ""
    netloc = parts.netloc.rpartition("@")[2]
    return url.replace(parts.netloc, f"{user}:{MASK}@{netloc}", 1)


def mask_value(value: Any, key: object = None) -> Any:
    """``value`` (config data) with every secret in it masked, recursively.

    A value under a secret-looking ``key`` is masked whole; a string under a URL-looking
    key keeps only its scheme and host; any other URL loses its userinfo password.
    """
    if isinstance(value, Mapping):
        # Under a secret key (``credentials: {...}``) every leaf is a secret.
        inherited = key if is_secret_key(key) else None
        return {k: mask_value(v, inherited or k) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [mask_value(item, key) for item in value]
    if value is None or value == "" or isinstance(value, bool):
        return value  # a switch (``use_auth: true``) is no secret
    if is_secret_key(key):
        return MASK
    if isinstance(value, str):
        if isinstance(key, str) and _URL_KEY.search(key) and _URL.match(value):
            return mask_url(value)
        if _URL.match(value):
            return mask_url_password(value)
    return value


def url_secrets(url: str) -> list[str]:
    """The parts of a secret URL that must never be shown, as a server may echo them.

    The whole URL, its path and query, the userinfo password, token-like path segments
    (a digit and 6+ characters, or 16+), the values of the query, each as written and
    percent-decoded.
    """
    url = url.strip()
    try:
        parts = urlsplit(url)
    except ValueError:
        return [url]
    path, query = parts.path, parts.query
    try:
        password = parts.password
    except ValueError:
        password = None
    if path in ("", "/") and not query and not password:
        return []  # scheme and host only: nothing in it is secret
    found = [url]
    if path not in ("", "/"):
        found.append(path)
        if query:
            found.append(f"{path}?{query}")
    if query:
        found.append(query)
        for pair in query.split("&"):
            name, _, raw = pair.partition("=")
            if raw and (is_secret_key(unquote(name)) or _TOKEN_LIKE.fullmatch(unquote(raw))):
                found.append(raw)  # percent-decoded below
    for segment in path.split("/"):
        if _TOKEN_LIKE.fullmatch(segment):
            found.append(segment)
    if password:
        found.append(password)
    return found + [unquote(text) for text in found]


def _data_secrets(value: Any, key: object = None) -> list[str]:
    """The secret strings in config data, by the rules of ``mask_value``."""
    if isinstance(value, Mapping):
        inherited = key if is_secret_key(key) else None
        return [s for k, v in value.items() for s in _data_secrets(v, inherited or k)]
    if isinstance(value, list | tuple):
        return [s for item in value for s in _data_secrets(item, key)]
    if isinstance(value, bool) or value is None:
        return []
    if is_secret_key(key) and isinstance(value, str):
        # Strings only: a number under such a key (``session_timeout: 3600``) searched
        # for in free text would mask every "3600"; reprs and ``check`` still mask it.
        return url_secrets(value) if _URL.match(value) else _word_secrets(value)
    if isinstance(value, str) and _URL.match(value):
        if isinstance(key, str) and _URL_KEY.search(key):
            return url_secrets(value)
        try:
            password = urlsplit(value).password
        except ValueError:
            return []
        return [password] if password else []
    return []


def _word_secrets(text: str) -> list[str]:
    """A secret, its stripped form, and the token in ``Bearer <token>`` or ``id:token``."""
    found = [text, text.strip()]
    words = text.split()
    if len(words) > 1:
        found.extend(words[1:])
    if ":" in text:
        found.append(text.rpartition(":")[2])
    return found


def config_secrets(config: BaseModel) -> list[str]:
    """Every secret string of a backend config, built-in or third-party."""
    from pydantic import BaseModel, SecretStr

    found: list[str] = []
    fields = type(config).model_fields
    for name in fields:
        value = getattr(config, name, None)
        found.extend(_field_secrets(name, value, SecretStr, BaseModel))
    for name, value in (config.model_extra or {}).items():
        found.extend(_data_secrets(value, name))
    return found


def _field_secrets(name: str, value: Any, secret_type: type, model_type: type) -> list[str]:
    if isinstance(value, secret_type):
        text = value.get_secret_value()  # type: ignore[attr-defined]
        return url_secrets(text) if _URL.match(text.strip()) else _word_secrets(text)
    if isinstance(value, model_type):
        return config_secrets(value)  # type: ignore[arg-type]
    if isinstance(value, Mapping):
        return [
            s for k, v in value.items() for s in _field_secrets(str(k), v, secret_type, model_type)
        ]
    if isinstance(value, list | tuple):
        return [s for v in value for s in _field_secrets(name, v, secret_type, model_type)]
    return _data_secrets(value, name)


# -- the registry of live secrets ---------------------------------------------------------


class _Registry:
    """Secrets of live backends, counted, with one compiled pattern that finds them all.

    Nothing here may block a reader: ``pattern`` runs inside logging calls, and the
    garbage collector can run a finalizer (``discard``) or an ``__del__`` that logs
    (asyncio's "Task was destroyed") at any allocation, even while this thread holds
    the lock. So ``discard`` only queues (a deque append is atomic), readers never wait
    for the lock, and they read an immutable snapshot, replaced whole on every change.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._discarded: deque[tuple[str, ...]] = deque()
        # (the secrets, longest first; their compiled pattern or None until first use)
        self._state: tuple[tuple[str, ...], re.Pattern[str] | None] = ((), None)

    def add(self, secrets: Iterable[str]) -> tuple[str, ...]:
        kept = tuple({s for s in secrets if len(s.strip()) >= _MIN_SECRET})
        if kept:
            with self._lock:
                self._apply_discards()
                self._counts.update(kept)
                self._snapshot()
        return kept

    def discard(self, secrets: tuple[str, ...]) -> None:
        self._discarded.append(secrets)

    def _apply_discards(self) -> None:
        """Under the lock: forget the secrets of backends that are gone."""
        if not self._discarded:
            return
        while self._discarded:
            for secret in self._discarded.popleft():
                self._counts[secret] -= 1
                if self._counts[secret] <= 0:
                    del self._counts[secret]
        self._snapshot()

    def _snapshot(self) -> None:
        # Longest first: a whole URL is replaced before its path or one of its segments.
        self._state = (tuple(sorted(self._counts, key=len, reverse=True)), None)

    def __bool__(self) -> bool:
        return bool(self._state[0])

    def pattern(self) -> re.Pattern[str] | None:
        if self._discarded and self._lock.acquire(blocking=False):
            try:
                self._apply_discards()
            finally:
                self._lock.release()
        secrets, compiled = state = self._state
        if compiled is None and secrets:
            compiled = re.compile("|".join(map(re.escape, secrets)))
            if self._state is state:  # not replaced meanwhile: keep the work
                self._state = (secrets, compiled)
        return compiled

    def replacement(self, secret: str) -> str:
        return mask_url(secret) if _URL.match(secret) else MASK


_registry = _Registry()


def register_secrets(owner: object, secrets: Iterable[str]) -> None:
    """Mask ``secrets`` in every log record and report for as long as ``owner`` lives."""
    kept = _registry.add(secrets)
    if kept:
        _install_record_factory()
        weakref.finalize(owner, _registry.discard, kept)


def redact(text: str, extra: Iterable[str] = ()) -> str:
    """``text`` with every registered secret (and every one of ``extra``) masked."""
    if extra:
        extra = [s for s in extra if len(s.strip()) >= _MIN_SECRET]
        if extra:
            ordered = sorted(set(extra), key=len, reverse=True)
            text = re.sub(
                "|".join(map(re.escape, ordered)),
                lambda m: _registry.replacement(m.group(0)),
                text,
            )
    pattern = _registry.pattern()
    if pattern is None or not text:
        return text
    return pattern.sub(lambda m: _registry.replacement(m.group(0)), text)


# -- log records --------------------------------------------------------------------------

_PREFIXES = tuple(f"{name}." for name in REDACTED_LOGGERS)
_install_lock = threading.Lock()
_installed = threading.Event()


def _install_record_factory() -> None:
    """Wrap the log-record factory once: a logger filter would miss child loggers
    (``httpcore.http11``) and loggers created after a backend starts (telethon's)."""
    if _installed.is_set():
        return
    with _install_lock:
        if _installed.is_set():
            return
        previous = logging.getLogRecordFactory()

        def make_record(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = previous(*args, **kwargs)
            if _registry:
                name = record.name
                if name in REDACTED_LOGGERS or name.startswith(_PREFIXES):
                    _redact_record(record)
            return record

        logging.setLogRecordFactory(make_record)
        _installed.set()


def _redact_record(record: logging.LogRecord) -> None:
    try:
        text = record.getMessage()
    except Exception:  # a malformed record is logging's to report, not ours
        return
    masked = redact(text)
    if masked != text:
        record.msg, record.args = masked, None
    if record.exc_info and not record.exc_text:
        formatted = logging.Formatter().formatException(record.exc_info)
        masked = redact(formatted)
        if masked != formatted:
            record.exc_text = masked
    if record.stack_info:
        record.stack_info = redact(record.stack_info)
