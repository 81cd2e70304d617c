"""Email attachments: throughput with a 1 MiB file per message, and the memory of 20 MiB.

A local aiosmtpd server (``SMTPTestServer``) runs in a separate process, as in
``bench_email``.

- throughput: 100 emails with the same 1 MiB attachment, sent by ``EmailCommunicator``
  (which builds each multipart message), against raw aiosmtplib sending messages with
  the same attachment, built with the standard library and flattened before the clock
  starts, on one connection. Target: at least 0.8x.
- memory: the peak of Python allocations (tracemalloc, in a fresh process) while one
  message with a 20 MiB attachment is read from disk and sent, above the process's
  baseline, against raw aiosmtplib's ``sendmail`` of the same message pre-built (whose
  line-end normalisation, ``re.sub`` over every base64 line, peaks near five times the
  message). Target: at most 4x the attachment's size.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from typing import Any

from benchmarks._common import Row, Sample, print_rows
from benchmarks.bench_email import (
    LOCAL_HOSTNAME,
    RECIPIENT,
    SENDER,
    _Server,
    _start_server,
)

MIB = 1024 * 1024


def _attachment_email(number: int, data: bytes) -> EmailMessage:
    message = EmailMessage()
    message["From"] = SENDER
    message["To"] = RECIPIENT
    message["Subject"] = f"[WARNING] bench {number}"
    message["Date"] = formatdate(localtime=True)
    message["Message-ID"] = make_msgid(domain="example.com")
    message.set_content(f"nightly report {number}")
    message.add_attachment(data, maintype="application", subtype="octet-stream", filename="r.bin")
    return message


def _plain_options(port: int) -> dict[str, Any]:
    """aiosmtplib options for the plain-text bench server on ``port``."""
    return {
        "hostname": "127.0.0.1",
        "port": port,
        "start_tls": False,
        "local_hostname": LOCAL_HOSTNAME,
        "timeout": 30,
    }


def _backend(port: int) -> Any:
    from processpype.communications.backends.email import EmailCommunicator
    from processpype.config.models import EmailCommunicatorConfig

    config = EmailCommunicatorConfig.model_validate(
        {
            "host": "127.0.0.1",
            "port": port,
            "from_address": SENDER,
            "default_recipients": [RECIPIENT],
            "use_tls": False,
            "local_hostname": LOCAL_HOSTNAME,
        }
    )
    return EmailCommunicator("bench", config)


async def _ours(server: _Server, count: int, data: bytes) -> float:
    from processpype.communications.models import Attachment, OutgoingMessage

    attachment = Attachment.from_bytes(data, "r.bin")
    mail = _backend(server.port)
    await mail.start()
    started = time.perf_counter()
    for number in range(count):
        await mail.send(
            OutgoingMessage(
                message=f"nightly report {number}",
                subject=f"[WARNING] bench {number}",
                attachments=[attachment],
            )
        )
    elapsed = time.perf_counter() - started
    await mail.stop()
    return elapsed


async def _raw_prebuilt(server: _Server, count: int, data: bytes) -> float:
    import aiosmtplib

    messages = [_attachment_email(number, data).as_bytes() for number in range(count)]
    smtp = aiosmtplib.SMTP(**_plain_options(server.port))
    await smtp.connect()
    started = time.perf_counter()
    for message in messages:
        await smtp.sendmail(SENDER, [RECIPIENT], message)
    elapsed = time.perf_counter() - started
    await smtp.quit()
    return elapsed


def _throughput(count: int, size: int, repeats: int) -> dict[str, Any]:
    data = os.urandom(size)
    ways = {"ours": _ours, "raw": _raw_prebuilt}
    server = _start_server(None, None)
    try:
        samples = {name: Sample([]) for name in ways}
        for way in ways.values():  # warm up imports, caches, the server
            asyncio.run(way(server, min(count, 5), data))
        for _ in range(repeats):  # interleaved, so a noisy moment hits both
            for name, way in ways.items():
                before = server.count()
                elapsed = asyncio.run(way(server, count, data))
                if server.count() - before != count:
                    raise RuntimeError(f"{name}: not every message arrived")
                samples[name].values.append(count / elapsed)
    finally:
        server.close()
    ours, raw = samples["ours"].median, samples["raw"].median
    ratio = ours / raw
    return Row(
        benchmark=f"email with a {size / MIB:g} MiB attachment, {count} messages",
        figure=ours,
        unit="msg/s",
        baselines={"raw aiosmtplib, one connection, pre-built messages (msg/s)": raw},
        ratios={"vs raw pre-built": ratio},
        target="≥ 0.8x raw pre-built",
        met=ratio >= 0.8,
        spread=samples["ours"].spread_text(),
    ).as_dict()


_MEMORY_SCRIPT = """
import asyncio, json, sys
from benchmarks.bench_attachments import _memory_ours, _memory_raw

way, port, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
print(json.dumps(asyncio.run((_memory_ours if way == "ours" else _memory_raw)(port, path))))
"""


async def _memory_ours(port: int, path: str) -> dict[str, float]:
    """Fresh process: the traced peak of reading ``path`` and sending it as an attachment."""
    import gc
    import tracemalloc

    from processpype.communications.models import Attachment, OutgoingMessage

    mail = _backend(port)
    await mail.start()
    await mail.send(OutgoingMessage(message="warm-up"))
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    message = OutgoingMessage(message="the dump", attachments=[Attachment.from_path(path)])
    await mail.send(message)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    await mail.stop()
    return {"peak": peak - before}


async def _memory_raw(port: int, path: str) -> dict[str, float]:
    """Fresh process: the traced peak of raw aiosmtplib sending a pre-built message."""
    import gc
    import tracemalloc

    import aiosmtplib

    raw = await asyncio.to_thread(Path(path).read_bytes)
    data = _attachment_email(0, raw).as_bytes()
    del raw
    smtp = aiosmtplib.SMTP(**_plain_options(port))
    await smtp.connect()
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    await smtp.sendmail(SENDER, [RECIPIENT], data)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    await smtp.quit()
    return {"peak": peak - before}


def _peak(way: str, port: int, path: str) -> float:
    root = Path(__file__).resolve().parents[1]
    completed = subprocess.run(
        [sys.executable, "-c", _MEMORY_SCRIPT, way, str(port), path],
        capture_output=True,
        text=True,
        cwd=root,
        check=True,
        timeout=600,
    )
    result: dict[str, float] = json.loads(completed.stdout.strip().splitlines()[-1])
    return result["peak"]


def _memory(size: int) -> dict[str, Any]:
    server = _start_server(None, None)
    try:
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "dump.bin"
            path.write_bytes(os.urandom(size))
            before = server.count()
            ours = _peak("ours", server.port, str(path))
            raw = _peak("raw", server.port, str(path))
            # ours sends a warm-up message first, then the attachment; raw sends one.
            if server.count() - before != 3:
                raise RuntimeError("the messages with the attachment did not both arrive")
    finally:
        server.close()
    times = ours / size
    return Row(
        benchmark=f"peak memory sending one {size / MIB:g} MiB attachment (read from disk)",
        figure=ours / MIB,
        unit="MiB",
        baselines={
            "attachment size (MiB)": size / MIB,
            "raw aiosmtplib sendmail of the pre-built message (MiB)": raw / MIB,
        },
        ratios={"peak vs attachment size": times, "vs raw aiosmtplib's own peak": ours / raw},
        target="≤ 4x the attachment's size above baseline",
        met=times <= 4.0,
        spread="single run (deterministic allocations)",
    ).as_dict()


def run(size: str = "full") -> list[dict[str, Any]]:
    """Two rows: 1 MiB attachments' throughput and the peak memory of a 20 MiB one."""
    if size == "tiny":
        return [_throughput(5, 64 * 1024, 1), _memory(256 * 1024)]
    return [_throughput(100, MIB, 5), _memory(20 * MIB)]


if __name__ == "__main__":
    print_rows(run(sys.argv[1] if len(sys.argv) > 1 else "full"))
