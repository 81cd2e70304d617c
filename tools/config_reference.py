"""Write docs/configuration.md from the config models: ``python tools/config_reference.py``.

``tests/test_docs.py`` fails when the file is out of date, so the reference never drifts
from the code.
"""

from __future__ import annotations

import sys
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from processpype.config.models import (
    CommunicationsConfig,
    CommunicatorBackendConfig,
    ConsoleCommunicatorConfig,
    DiscordCommunicatorConfig,
    EmailCommunicatorConfig,
    SlackCommunicatorConfig,
    TelegramChatConfig,
    TelegramCommunicatorConfig,
    WebhookCommunicatorConfig,
)
from processpype.config.outbox import OutboxConfig

TARGET = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"
SECRETS = {"token", "api_hash", "session_string", "password", "url", "headers"}

SECTIONS: list[tuple[str, type[BaseModel], str]] = [
    (
        "`communications`",
        CommunicationsConfig,
        "The root of the file, or its `communications:` key.",
    ),
    (
        "Every backend",
        CommunicatorBackendConfig,
        "Keys every backend accepts. A `type` that is not built in keeps its other keys "
        "for a third-party backend (`config.model_extra`); a `type` within a letter's case "
        'or two edits of a built-in one (`Email`, `emial`) is an error that asks "did you '
        'mean". Extra keys named like secrets (`*token*`, `*key*`, `*secret*`, '
        "`password`, ...) and passwords in URLs are masked in `repr`, logs and `check`.",
    ),
    ("`type: console`", ConsoleCommunicatorConfig, "No extra needed."),
    ("`type: telegram`", TelegramCommunicatorConfig, "Extra `telegram` (telethon)."),
    ("Telegram `chats.<label>`", TelegramChatConfig, "One chat a label routes to."),
    ("`type: email`", EmailCommunicatorConfig, "Extra `email` (aiosmtplib)."),
    ("`type: webhook`", WebhookCommunicatorConfig, "Extra `webhook` (httpx)."),
    ("`type: slack`", SlackCommunicatorConfig, "Extra `webhook` (httpx)."),
    ("`type: discord`", DiscordCommunicatorConfig, "Extra `webhook` (httpx)."),
    (
        "`outbox`",
        OutboxConfig,
        "Extra `redis` (redis-py). A Redis outbox shared by processes: see "
        "[scale-out.md](scale-out.md).",
    ),
]

BASE_FIELDS = set(CommunicatorBackendConfig.model_fields)


def _type_name(annotation: Any) -> str:
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Annotated:
        return _type_name(args[0])
    if origin in (Union, UnionType):
        return " | ".join(dict.fromkeys(_type_name(arg) for arg in args))
    if origin is Literal:
        return " | ".join(repr(arg) for arg in args)
    if origin is not None:
        inner = ", ".join(_type_name(arg) for arg in args)
        return f"{getattr(origin, '__name__', str(origin))}[{inner}]"
    if annotation is type(None):
        return "None"
    if annotation is Any:
        return "any JSON"
    name = getattr(annotation, "__name__", str(annotation))
    if name.endswith("CommunicatorConfig") or name == "CommunicatorBackendConfig":
        return "backend"
    return {
        "TelegramChatConfig": "chat",
        "MessageSeverity": "severity",
        "OutboxConfig": "outbox",
    }.get(name, name)


def _default(field: FieldInfo) -> str:
    if field.default is PydanticUndefined and field.default_factory is None:
        return "(required)"
    value: Any = field.get_default(call_default_factory=True)
    if hasattr(value, "get_secret_value"):
        value = value.get_secret_value()
    if hasattr(value, "value"):
        value = value.value
    return f"`{value!r}`"


def _table(model: type[BaseModel], *, skip_base: bool) -> list[str]:
    rows = ["| key | type | default | description |", "|---|---|---|---|"]
    for name, field in model.model_fields.items():
        if skip_base and name in BASE_FIELDS:
            continue
        description = (field.description or "").replace("|", "\\|")
        if name in SECRETS and name != "headers":
            description += " (secret: masked in repr, logs and dumps)"
        type_name = _type_name(field.annotation).replace("|", "\\|")
        rows.append(f"| `{name}` | `{type_name}` | {_default(field)} | {description} |")
    return rows


def render() -> str:
    """The whole reference page."""
    lines = [
        "# Configuration reference",
        "",
        "Generated from the models in `processpype/config/models.py` by",
        "`python tools/config_reference.py`; do not edit by hand.",
        "",
        "Strings may use `${VAR}` and `${VAR:-default}` (environment, or the `env=` mapping",
        "given to `load_config` / `Notifier.from_yaml`); `$${` is a literal `${`. A default",
        "may hold a placeholder itself: `${A:-${B:-fallback}}`.",
        "Built-in backend types refuse unknown keys.",
    ]
    for title, model, note in SECTIONS:
        backend = (
            issubclass(model, CommunicatorBackendConfig) and model is not CommunicatorBackendConfig
        )
        lines += ["", f"## {title}", "", note]
        if backend:
            lines.append(
                "Also every key of *Every backend* (`type`, `enabled`, `labels`, `min_severity`)."
            )
        lines += ["", *_table(model, skip_base=backend)]
    return "\n".join(lines) + "\n"


def main() -> int:
    """Write the page; with --check, exit 1 when it is out of date instead."""
    text = render()
    if "--check" in sys.argv:
        current = TARGET.read_text(encoding="utf-8") if TARGET.exists() else ""
        if current != text:
            print(f"{TARGET.name} is out of date: run python tools/config_reference.py")
            return 1
        return 0
    TARGET.write_text(text, encoding="utf-8")
    print(f"wrote {TARGET}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
