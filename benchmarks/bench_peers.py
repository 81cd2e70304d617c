"""Blocking email sends: the Notifier against apprise's ``mailto://`` plugin.

Both send plain-text mail to the same local aiosmtpd server, which runs in a separate
process (the one of ``bench_email``), one blocking call per message, as a script that
alerts after each job would. apprise sleeps between two sends of the same target
(``request_rate_per_sec``, 5.5 s for email), so its steady-state figure is the second
and later messages; its first message is shown as a baseline of its own.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from benchmarks._common import Row, Sample, print_rows
from benchmarks.bench_email import RECIPIENT, SENDER, _start_server


def _ours(port: int, count: int) -> Sample:
    from processpype import Notifier

    config = {
        "enabled": True,
        "backends": {
            "mail": {
                "type": "email",
                "host": "127.0.0.1",
                "port": port,
                "use_tls": False,
                "start_tls": False,
                "from_address": SENDER,
                "default_recipients": [RECIPIENT],
                "local_hostname": "bench.processpype.test",
            }
        },
    }
    sample = Sample([])
    with Notifier(config) as notifier:
        notifier.send("warm-up").raise_for_errors()
        for number in range(count):
            started = time.perf_counter()
            notifier.send(f"job {number} done", subject="Job done").raise_for_errors()
            sample.values.append(time.perf_counter() - started)
    return sample


def _apprise(port: int, count: int) -> tuple[float, Sample]:
    import apprise

    notifier = apprise.Apprise()
    url = f"mailto://127.0.0.1:{port}?mode=insecure&from={SENDER}&to={RECIPIENT}"
    if not notifier.add(url):
        raise RuntimeError("apprise refused the mailto:// URL")
    started = time.perf_counter()
    if not notifier.notify(body="job 0 done", title="Job done"):
        raise RuntimeError("apprise failed to send")
    first = time.perf_counter() - started
    steady = Sample([])
    for number in range(1, count):
        started = time.perf_counter()
        if not notifier.notify(body=f"job {number} done", title="Job done"):
            raise RuntimeError("apprise failed to send")
        steady.values.append(time.perf_counter() - started)
    return first, steady


def run(size: str = "full") -> list[dict[str, Any]]:
    """One row: median ms per blocking email send, ours against apprise mailto://."""
    ours_count, apprise_count = (5, 1) if size == "tiny" else (50, 3)
    server = _start_server(None, None)
    try:
        ours = _ours(server.port, ours_count)
        first, steady = _apprise(server.port, apprise_count)
        expected = 1 + ours_count + apprise_count
        received = server.count()
        if received != expected:
            raise RuntimeError(f"the server received {received} messages, expected {expected}")
    finally:
        server.close()
    baselines = {"apprise mailto://, first message (ms)": first * 1000}
    ratios = {"vs apprise first": first / ours.median}
    if steady.values:
        baselines["apprise mailto://, next messages (ms)"] = steady.median * 1000
        ratios["vs apprise next"] = steady.median / ours.median
    return [
        Row(
            benchmark="blocking email send (Notifier.send, plain SMTP)",
            figure=ours.median * 1000,
            unit="ms/msg",
            baselines=baselines,
            ratios=ratios,
            target="≥ 3x faster than apprise (every figure)",
            met=all(ratio >= 3 for ratio in ratios.values()),
            spread=ours.spread_text(),
        ).as_dict()
    ]


if __name__ == "__main__":
    print_rows(run(sys.argv[1] if len(sys.argv) > 1 else "full"))
