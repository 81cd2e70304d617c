"""Run every benchmark and print one table: ``python -m benchmarks [--size tiny|full]``.

Each module ``benchmarks/bench_*.py`` exposes ``run(size) -> list[dict]``; every row
carries our figure, the baselines measured in the same run, the ratios, the target and
whether it is met, and the spread of the repeated runs (flagged NOISY when large).
"""

from __future__ import annotations

import argparse
import importlib
import os
import platform
import sys
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks._common import NOISY_SPREAD, format_table

MODULES = [
    "bench_import",
    "bench_lifecycle",
    "bench_notifier",
    "bench_email",
    "bench_attachments",
    "bench_telegram",
    "bench_peers",
    "bench_progress",
    "bench_outbox",
]


def machine_line() -> str:
    """Where the figures were measured."""
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (
        f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}, load average {load:.2f} at start, "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
    )


def run_all(size: str, only: list[str] | None) -> tuple[list[dict[str, Any]], list[str]]:
    """Run the selected benchmark modules; return their rows and the failures."""
    rows: list[dict[str, Any]] = []
    failures: list[str] = []
    for name in MODULES:
        if only and not any(part in name for part in only):
            continue
        started = time.perf_counter()
        print(f"running {name} ({size}) ...", file=sys.stderr, flush=True)
        try:
            module = importlib.import_module(f"benchmarks.{name}")
            rows.extend(module.run(size))
        except Exception:
            failures.append(name)
            traceback.print_exc()
        print(f"  {name} took {time.perf_counter() - started:.1f}s", file=sys.stderr, flush=True)
    return rows, failures


def markdown_page(machine: str, size: str, table: str, noisy: list[str]) -> str:
    """docs/benchmarks.md: the table, where it was measured and how to rerun it."""
    note = ""
    if noisy:
        note = (
            f"\nThe machine was noisy during: {', '.join(noisy)}. Those figures carry a wide "
            "spread; rerun on a quiet machine before relying on them.\n"
        )
    return f"""# Benchmarks

Every figure below was measured in one run, beside its baselines, on:
{machine} (size `{size}`). Each benchmark repeats its runs and reports the median;
*spread* is half the interquartile range over the median, flagged NOISY above
{NOISY_SPREAD:.0%}.

Rerun with `tox -e bench` (or `pip install -e '.[all,testing]' apprise` and
`python -m benchmarks --markdown docs/benchmarks.md`); `python -m benchmarks.bench_email`
and the other modules run one benchmark alone.

{table}
{note}
## What is compared

- **import**: `python -c "import processpype"` against `python -c pass` (names load on
  first use, so importing the package costs almost nothing).
- **Notifier start + close**: a console backend, against starting and stopping a bare
  thread that runs an event loop.
- **blocking send round trip** (in-memory backend): against a `queue.SimpleQueue`
  ping-pong between two threads (the floor of any blocking call across threads), one
  `asyncio.run_coroutine_threadsafe(...).result()` per message, and
  `apprise.Apprise.notify` to an in-memory `@notify` target.
- **send_nowait throughput**: messages delivered per second, end to end, against one
  `run_coroutine_threadsafe` per message; and peak memory under a flood of 1,000,000
  messages against a tenth of that.
- **email throughput**: 1000 messages to a local aiosmtpd server in another process,
  against raw aiosmtplib on one connection (the limit) and a new connection per message
  (what `logging.handlers.SMTPHandler` does).
- **email attachments**: 100 emails with a 1 MiB attachment each against raw aiosmtplib
  sending the same messages pre-built on one connection; and the peak traced memory of
  reading and sending one 20 MiB attachment, against its size and against raw
  aiosmtplib's own peak for the pre-built message.
- **blocking email send**: `Notifier.send` against apprise's `mailto://` plugin on the
  same server (apprise waits 5.5 s between two sends to one target).
- **Telegram pacing**: messages across private chats and groups against the fake
  client enforcing Telegram's limits, against the minimum time the limits allow and a
  sender that paces at one message every 0.1 s.
- **progress**: the time `Notifier.progress` adds to each item of a loop between two
  edits, against the same loop bare.
- **outbox** (needs `redis-server`): enqueue throughput and blocking-send latency (p50,
  p99) with 1, 2 and 4 producer processes against direct in-process delivery; drain
  rate with 1, 2 and 4 worker processes against one worker; the Telegram rate through
  1, 2 and 4 workers of one bot against the bot's limit.
"""


def main(argv: list[str] | None = None) -> int:
    """Run the suite and print the table; exit 1 if a benchmark crashed."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--size", choices=["tiny", "full"], default="full")
    parser.add_argument("--only", nargs="*", help="run modules whose name contains one of these")
    parser.add_argument("--markdown", type=Path, help="also write the table to this file")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is not met")
    args = parser.parse_args(argv)

    machine = machine_line()
    rows, failures = run_all(args.size, args.only)
    table = format_table(rows)
    print(f"\nMeasured on {machine}\n")
    print(table)
    noisy = [r["benchmark"] for r in rows if "NOISY" in str(r.get("spread", ""))]
    if noisy:
        print(
            f"\nNOTE: the machine was noisy during {len(noisy)} figure(s) "
            f"({', '.join(noisy)}): rerun on a quiet machine before trusting them."
        )
    if args.markdown:
        args.markdown.write_text(markdown_page(machine, args.size, table, noisy), encoding="utf-8")
    unmet = [r["benchmark"] for r in rows if not r.get("met")]
    if failures:
        print(f"\nbenchmarks that crashed: {', '.join(failures)}", file=sys.stderr)
        return 1
    if unmet and args.strict:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
