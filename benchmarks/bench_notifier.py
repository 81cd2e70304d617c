"""Notifier speed: blocking ``send`` round trip, ``send_nowait`` throughput, flood memory.

Every figure is measured against baselines from the same run:

- round trip: a ``queue.SimpleQueue`` ping-pong between two threads (the floor of any
  blocking call across threads), one ``run_coroutine_threadsafe(...).result()`` per
  message into the same dispatcher and backend, and ``apprise.Apprise.notify`` to an
  in-memory ``@notify`` target;
- throughput: one ``run_coroutine_threadsafe`` per message, all in flight, then waited;
  each repeat measures both back to back, and the ratio is the median of the pairs;
- flood: peak traced memory (tracemalloc) of a process flooding 1,000,000 messages
  through ``send_nowait`` against the same process flooding a tenth of that (bounded:
  equal, not 10x).

Run ``python -m benchmarks.bench_notifier [tiny|full]``.
"""

from __future__ import annotations

import asyncio
import json
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks._common import Row, Sample, print_rows
from processpype.communications.base import Communicator
from processpype.communications.dispatcher import CommunicationDispatcher
from processpype.communications.models import OutgoingMessage
from processpype.communications.notifier import Notifier
from processpype.config.models import CommunicatorBackendConfig

_SIZES: dict[str, dict[str, int]] = {
    # repeats; round trips per repeat (apprise: fewer, it is slow); throughput messages;
    # the flood, and the smaller flood it is compared with (both beyond max_in_flight)
    "tiny": {
        "repeats": 3,
        "trips": 1000,
        "apprise": 200,
        "burst": 10_000,
        "flood": 30_000,
        "compare": 15_000,
    },
    "full": {
        "repeats": 5,
        "trips": 20_000,
        "apprise": 3000,
        "burst": 200_000,
        "flood": 1_000_000,
        "compare": 100_000,
    },
}


_ROUND_TRIP_CHUNKS = 4
"""Interleaved chunks per repeat of the round-trip figures (see ``_round_trip``)."""


class CountingCommunicator(Communicator):
    """An in-memory backend that only counts what it is sent (keeps nothing)."""

    def __init__(self, name: str = "memory") -> None:
        super().__init__(name, CommunicatorBackendConfig(type="memory"))
        self.count = 0

    async def start(self) -> None:
        """Mark started."""
        self._started = True

    async def stop(self) -> None:
        """Mark stopped."""
        self._started = False

    async def send(self, message: OutgoingMessage) -> None:
        """Count the message."""
        self.count += 1


class YieldingCommunicator(CountingCommunicator):
    """Counts, after yielding to the loop once: slower than the producer, so a flood
    fills ``max_in_flight`` and back-pressure engages, whatever the machine's speed."""

    async def send(self, message: OutgoingMessage) -> None:
        """Yield once, then count the message."""
        await asyncio.sleep(0)
        self.count += 1


def _notifier(backend: CountingCommunicator | None = None) -> tuple[Notifier, CountingCommunicator]:
    notifier = Notifier({"enabled": True}, name="bench")
    backend = backend if backend is not None else CountingCommunicator()
    notifier.add_communicator(backend)
    return notifier, backend


class _LoopThread:
    """The naive facade: a loop on a thread, one run_coroutine_threadsafe per message."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.dispatcher = CommunicationDispatcher()
        self.backend = CountingCommunicator()
        self.dispatcher.register(self.backend)
        asyncio.run_coroutine_threadsafe(self.dispatcher.start_all(), self.loop).result()

    def send(self, text: str) -> Any:
        message = OutgoingMessage(message=text)
        return asyncio.run_coroutine_threadsafe(self.dispatcher.deliver(message), self.loop)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()
        self.loop.close()


def _per_call(action: Callable[[int], object], count: int) -> float:
    """Microseconds per call of ``action`` over ``count`` calls (after a short warm-up)."""
    for i in range(min(200, count)):
        action(i)
    start = time.perf_counter()
    for i in range(count):
        action(i)
    return (time.perf_counter() - start) / count * 1e6


def _floor(count: int) -> float:
    requests: queue.SimpleQueue[int | None] = queue.SimpleQueue()
    replies: queue.SimpleQueue[int] = queue.SimpleQueue()

    def echo() -> None:
        while (item := requests.get()) is not None:
            replies.put(item)

    thread = threading.Thread(target=echo, daemon=True)
    thread.start()

    def trip(i: int) -> int:
        requests.put(i)
        return replies.get()

    try:
        return _per_call(trip, count)
    finally:
        requests.put(None)
        thread.join()


def _apprise_notify() -> Callable[[int], object] | None:
    try:
        import apprise
        from apprise.decorators import notify
    except ImportError:
        return None
    received: list[str] = []

    @notify(on="pppbench", name="processpype benchmark target")  # type: ignore[untyped-decorator,no-untyped-call]
    def memory_target(body: str, title: str, notify_type: str, *args: Any, **kwargs: Any) -> bool:
        received.append(body)
        return True

    target = apprise.Apprise()
    target.add("pppbench://")

    def send(i: int) -> object:
        return target.notify(body=f"message {i}")

    return send


def _round_trip(sizes: dict[str, int]) -> dict[str, Any]:
    notifier, _ = _notifier()
    naive = _LoopThread()
    apprise_send = _apprise_notify()
    ours, floor, rcts, app = Sample([]), Sample([]), Sample([]), Sample([])
    # The machine may be shared: measure the figures in short interleaved chunks, so
    # each of them sees the same mix of quiet and busy moments. Ratios are medians of
    # the per-chunk ratios: each compares figures measured a moment apart.
    by_floor, by_rcts, by_apprise = Sample([]), Sample([]), Sample([])
    chunks = _ROUND_TRIP_CHUNKS
    trips = max(1, sizes["trips"] // chunks)
    try:
        for _ in range(sizes["repeats"] * chunks):
            floor.values.append(_floor(trips))
            ours.values.append(_per_call(lambda i: notifier.send(f"message {i}"), trips))
            rcts.values.append(_per_call(lambda i: naive.send(f"message {i}").result(), trips))
            by_floor.values.append(floor.values[-1] / ours.values[-1])
            by_rcts.values.append(rcts.values[-1] / ours.values[-1])
            if apprise_send is not None:
                app.values.append(_per_call(apprise_send, max(1, sizes["apprise"] // chunks)))
                by_apprise.values.append(app.values[-1] / ours.values[-1])
    finally:
        notifier.close()
        naive.close()
    baselines = {
        "SimpleQueue ping-pong (floor)": floor.median,
        "run_coroutine_threadsafe().result()": rcts.median,
    }
    ratios = {
        "floor/ours": by_floor.median,
        "run_coroutine_threadsafe/ours": by_rcts.median,
    }
    # At most 1.5x the floor: floor/ours of at least 1/1.5.
    met = by_floor.median >= 1 / 1.5 and by_rcts.median > 1
    if app.values:
        baselines["apprise.notify (@notify memory)"] = app.median
        ratios["apprise/ours"] = by_apprise.median
        met = met and by_apprise.median >= 3
    return Row(
        benchmark="Notifier.send round trip (in-memory backend)",
        figure=ours.median,
        unit="µs/message",
        baselines=baselines,
        ratios=ratios,
        target="≤ 1.5x the floor (floor/ours ≥ 0.67), faster than run_coroutine_threadsafe, "
        "≥ 3x faster than apprise",
        met=met,
        spread=f"{ours.spread_text()}; floor/ours {by_floor.spread_text()}",
    ).as_dict()


def _ours_rate(count: int) -> float:
    """Messages per second through ``send_nowait``, from the first call to the flush."""
    notifier, backend = _notifier()
    try:
        start = time.perf_counter()
        for i in range(count):
            notifier.send_nowait(f"message {i}")
        notifier.flush(timeout=120)
        return backend.count / (time.perf_counter() - start)
    finally:
        notifier.close()


def _naive_rate(count: int) -> float:
    """Messages per second with one ``run_coroutine_threadsafe`` per message."""
    naive = _LoopThread()
    try:
        start = time.perf_counter()
        futures = [naive.send(f"message {i}") for i in range(count)]
        for future in futures:
            future.result()
        return naive.backend.count / (time.perf_counter() - start)
    finally:
        naive.close()


def _throughput(sizes: dict[str, int]) -> dict[str, Any]:
    count = sizes["burst"]
    naive_count = count // 4  # every coroutine stays in memory until it ran
    ours, naive_rate, paired = Sample([]), Sample([]), Sample([])
    # Each repeat measures both, back to back, in alternating order; the ratio is the
    # median of the per-repeat ratios, so a machine that drifts between repeats moves
    # both figures of a pair together.
    for index in range(sizes["repeats"]):
        if index % 2:
            naive = _naive_rate(naive_count)
            rate = _ours_rate(count)
        else:
            rate = _ours_rate(count)
            naive = _naive_rate(naive_count)
        ours.values.append(rate)
        naive_rate.values.append(naive)
        paired.values.append(rate / naive)
    ratio = paired.median
    return Row(
        benchmark="Notifier.send_nowait throughput (in-memory backend, end to end)",
        figure=ours.median,
        unit="messages/s",
        baselines={"one run_coroutine_threadsafe per message": naive_rate.median},
        ratios={"ours/run_coroutine_threadsafe (median of pairs)": ratio},
        target="≥ 3x run_coroutine_threadsafe",
        met=ratio >= 3,
        spread=f"{ours.spread_text()}; ratio {paired.spread_text()}",
    ).as_dict()


_FLOOD_SCRIPT = """
import gc, json, sys, tracemalloc
from benchmarks.bench_notifier import YieldingCommunicator, _notifier

count = int(sys.argv[1])
notifier, backend = _notifier(YieldingCommunicator())
for i in range(2000):
    notifier.send_nowait(f"warm-up {i}")
notifier.flush(timeout=60)
gc.collect()
# Python allocations, traced from here: the peak is what the flood held at once.
tracemalloc.start()
before = tracemalloc.get_traced_memory()[0]
for i in range(count):
    notifier.send_nowait(f"flood message {i}")
notifier.flush(timeout=900)
current, peak = tracemalloc.get_traced_memory()
tracemalloc.stop()
print(json.dumps({"peak_kib": (peak - before) / 1024, "left_kib": (current - before) / 1024,
                  "delivered": backend.count - 2000}))
notifier.close()
"""


def _flood(count: int) -> dict[str, float]:
    root = Path(__file__).resolve().parents[1]
    completed = subprocess.run(
        [sys.executable, "-c", _FLOOD_SCRIPT, str(count)],
        capture_output=True,
        text=True,
        cwd=root,
        check=True,
        timeout=1800,
    )
    result: dict[str, float] = json.loads(completed.stdout.strip().splitlines()[-1])
    if result["delivered"] != count:
        raise RuntimeError(f"flood delivered {result['delivered']} of {count} messages")
    return result


def _flood_memory(sizes: dict[str, int]) -> dict[str, Any]:
    count, compare = sizes["flood"], sizes["compare"]
    big = _flood(count)
    small = _flood(compare)
    peak_mib = max(big["peak_kib"] / 1024, 0.01)
    small_mib = max(small["peak_kib"] / 1024, 0.01)
    # Bounded: once max_in_flight messages are in flight, more messages need no more
    # memory (a little allocator noise allowed).
    met = peak_mib <= 1.25 * small_mib + 1
    return Row(
        benchmark=f"send_nowait flood of {count:,} messages: peak traced memory",
        figure=peak_mib,
        unit="MiB",
        baselines={
            f"same flood of {compare:,} messages (MiB)": small_mib,
            "still held after the flush (MiB)": max(big["left_kib"] / 1024, 0.01),
        },
        ratios={f"peak at {count:,} / peak at {compare:,}": peak_mib / small_mib},
        target=f"bounded: peak at {count:,} ≤ 1.25x peak at {compare:,} + 1 MiB "
        "(back-pressure, not growth)",
        met=met,
        spread="n=1",
    ).as_dict()


def run(size: str = "full") -> list[dict[str, Any]]:
    """Rows: send round trip, send_nowait throughput, flood memory."""
    sizes = _SIZES[size]
    return [_round_trip(sizes), _throughput(sizes), _flood_memory(sizes)]


if __name__ == "__main__":
    print_rows(run(sys.argv[1] if len(sys.argv) > 1 else "full"))
