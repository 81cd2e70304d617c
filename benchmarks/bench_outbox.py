"""The Redis outbox: enqueue throughput and latency, drain rate, Telegram-limited delivery.

Against a real ``redis-server`` on loopback (persistence off), with baselines from the
same run:

- enqueue: 1, 2 and 4 producer processes, each ``send_nowait`` a burst into the outbox
  (``queued`` once Redis has it) then time blocking ``send`` calls one by one (p50,
  p99); the baseline is direct in-process delivery by a Notifier without an outbox to
  an in-memory backend (throughput and latency of the same calls);
- drain: a filled outbox emptied by 1, 2 and 4 worker processes into an in-memory
  backend; the baseline is the one-worker rate. The entries are put in a side stream
  first and renamed into the outbox once every worker waits in its read, so start-up
  is not timed and all workers start together; the worker counts are measured in
  interleaved rounds (the median of each is shown), so a load that changes during the
  run weighs on every count alike. Each row also shows how busy the CPUs were (the
  workers' and Redis's CPU time over the wall time, against the cores): with more
  worker processes than free cores, the machine, not the outbox, is the limit;
- Telegram-limited: 1, 2 and 4 workers sending through the Telegram backend (the fake
  client, recording when each request arrives) for one bot: the rate stays flat at the
  bot's limit however many workers, because the windows live in Redis.

Run ``python -m benchmarks.bench_outbox [tiny|full]``.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

from benchmarks._common import Row, print_rows

ROOT = Path(__file__).resolve().parents[1]

_SIZES: dict[str, dict[str, int]] = {
    "tiny": {
        "burst": 300,
        "latency": 50,
        "drain": 3000,
        "rounds": 1,
        "telegram": 25,
        "bot_rate": 10,
    },
    "full": {
        "burst": 20_000,
        "latency": 2000,
        "drain": 20_000,
        "rounds": 3,
        "telegram": 240,
        "bot_rate": 30,
    },
}
_PRODUCERS = (1, 2, 4)
_WORKERS = (1, 2, 4)


def _settings(url: str, name: str, backends: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "enabled": True,
        "backends": backends or {"memory": {"type": "recording", "receiving": False}},
        "outbox": {"url": url, "name": name},
    }


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


# -- roles run in child processes ---------------------------------------------------------


def _producer_role(spec: dict[str, Any]) -> None:
    from processpype.communications.notifier import Notifier

    with Notifier(spec["config"]) as notifier:
        notifier.send("warm-up")
        print("ready", flush=True)
        sys.stdin.readline()
        start = time.time()
        for number in range(spec["burst"]):
            notifier.send_nowait(f"burst {number}")
        notifier.flush(120)
        end = time.time()
        latencies = []
        for number in range(spec["latency"]):
            began = time.perf_counter()
            notifier.send(f"latency {number}")
            latencies.append(time.perf_counter() - began)
    print(json.dumps({"start": start, "end": end, "latencies": latencies}), flush=True)


def _worker_role(spec: dict[str, Any]) -> None:
    from benchmarks.bench_notifier import CountingCommunicator
    from processpype.communications.backends import create_communicator
    from processpype.communications.base import Communicator
    from processpype.communications.outbox.worker import OutboxWorker
    from processpype.config.models import CommunicationsConfig, CommunicatorBackendConfig

    config = CommunicationsConfig.model_validate(spec["config"])
    if spec["kind"] == "telegram":
        _record_telegram_sends(spec["out"])

    def factory(name: str, backend: CommunicatorBackendConfig) -> Communicator:
        if spec["kind"] == "count":
            return CountingCommunicator(name)
        return create_communicator(name, backend)

    worker = OutboxWorker(config, concurrency=spec["concurrency"], factory=factory)

    async def main() -> None:
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, worker.stop)
        await worker.run()

    print("ready", flush=True)
    sys.stdin.readline()
    asyncio.run(main())


def _record_telegram_sends(path: str) -> None:
    from processpype.communications.backends import telegram
    from processpype.testing.telegram import FakeTelegramClient

    class RecordingFake(FakeTelegramClient):
        async def send_message(self, entity: Any, message: Any = "", **kwargs: Any) -> Any:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, f"{time.time()}\n".encode())
            finally:
                os.close(fd)
            return await super().send_message(entity, message, **kwargs)

    telegram.set_default_client_factory(RecordingFake().as_client_factory())


# -- the parent side ------------------------------------------------------------------------


def _spawn(role: str, spec: dict[str, Any]) -> subprocess.Popen[str]:
    # The checkout goes after site-packages (as in the smoke test): the installed
    # processpype is the one measured, and this module is still importable.
    code = (
        f"import runpy, sys; sys.path.append({str(ROOT)!r}); "
        "runpy.run_module('benchmarks.bench_outbox', run_name='__main__')"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", code, "--role", role, json.dumps(spec)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=tempfile.gettempdir(),
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if line.strip() != "ready":
        process.kill()
        raise RuntimeError(f"the {role} process did not start: {line!r}")
    return process


def _go(processes: list[subprocess.Popen[str]]) -> None:
    for process in processes:
        assert process.stdin is not None
        process.stdin.write("go\n")
        process.stdin.flush()


def _stop(processes: list[subprocess.Popen[str]]) -> None:
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in processes:
        try:
            process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()


def _cpu_seconds(pids: list[int]) -> float | None:
    """CPU time (user + system) the processes used so far; None where /proc is missing."""
    total = 0.0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as stat:
                # Fields after the command name (which may hold spaces): utime is 14th.
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            return None
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def _direct(sizes: dict[str, int]) -> tuple[float, list[float]]:
    """Direct in-process delivery: burst throughput and blocking-send latencies."""
    from benchmarks.bench_notifier import CountingCommunicator
    from processpype.communications.notifier import Notifier

    with Notifier({"enabled": True}, name="bench-direct") as notifier:
        notifier.add_communicator(CountingCommunicator())
        notifier.send("warm-up")
        start = time.perf_counter()
        for number in range(sizes["burst"]):
            notifier.send_nowait(f"burst {number}")
        notifier.flush(60)
        rate = sizes["burst"] / (time.perf_counter() - start)
        latencies = []
        for number in range(sizes["latency"]):
            began = time.perf_counter()
            notifier.send(f"latency {number}")
            latencies.append(time.perf_counter() - began)
    return rate, latencies


def _enqueue(url: str, sizes: dict[str, int], producers: int) -> tuple[float, list[float]]:
    spec = {
        "config": _settings(url, f"enqueue{producers}"),
        "burst": sizes["burst"],
        "latency": sizes["latency"],
    }
    processes = [_spawn("producer", spec) for _ in range(producers)]
    try:
        _go(processes)
        results = []
        for process in processes:
            assert process.stdout is not None
            results.append(json.loads(process.stdout.readline()))
    finally:
        _stop(processes)
    elapsed = max(r["end"] for r in results) - min(r["start"] for r in results)
    latencies = [value for r in results for value in r["latencies"]]
    return producers * sizes["burst"] / elapsed, latencies


def _drain(
    url: str, sizes: dict[str, int], workers: int, run: int
) -> tuple[float, tuple[float, float] | None]:
    """Entries per second ``workers`` processes drain; CPU cores the workers and Redis used."""
    import redis

    from processpype.communications.notifier import Notifier

    name = f"drain{workers}-{run}"
    stream = f"{name}:outbox"
    side = f"{name}-fill"
    with Notifier(_settings(url, side)) as notifier:
        for number in range(sizes["drain"]):
            notifier.send_nowait(f"entry {number}")
        notifier.flush(120)
    db = redis.Redis.from_url(url, decode_responses=True)
    db.xgroup_create(f"{side}:outbox", "workers", id="0")
    spec = {"config": _settings(url, name), "kind": "count", "concurrency": 16}
    processes = [_spawn("worker", spec) for _ in range(workers)]
    pids = [process.pid for process in processes]
    try:
        _go(processes)
        # Every worker started (backends built, group made, reading): start-up is not timed.
        while _blocked_readers(db) < workers:
            time.sleep(0.002)  # polling Redis for the workers' blocking reads
        redis_cpu, workers_cpu = _redis_cpu(db), _cpu_seconds(pids)
        start = time.perf_counter()
        db.rename(f"{side}:outbox", stream)  # the filled stream, with its group, at once
        while not _drained(db, stream):
            time.sleep(0.002)  # polling Redis for the end of the drain
        elapsed = time.perf_counter() - start
        redis_cpu = _redis_cpu(db) - redis_cpu
        workers_after = _cpu_seconds(pids)
    finally:
        db.close()
        _stop(processes)
    if workers_cpu is None or workers_after is None:
        return sizes["drain"] / elapsed, None
    # Cores busy: the workers' sum near the free cores, or Redis near 1 (it has one
    # thread), says what limits the drain.
    return sizes["drain"] / elapsed, ((workers_after - workers_cpu) / elapsed, redis_cpu / elapsed)


def _blocked_readers(db: Any) -> int:
    return sum(1 for client in db.client_list() if client.get("cmd") == "xreadgroup")


def _redis_cpu(db: Any) -> float:
    info = db.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def _lag(db: Any, stream: str) -> int | None:
    """Entries the workers have not read yet (None before they created their group)."""
    try:
        groups = db.xinfo_groups(stream)
    except Exception:
        return None
    group = next((g for g in groups if g["name"] == "workers"), None)
    return None if group is None else int(group["lag"])


def _drained(db: Any, stream: str) -> bool:
    try:
        groups = db.xinfo_groups(stream)
    except Exception:  # the workers have not created the group yet
        return False
    group = next((g for g in groups if g["name"] == "workers"), None)
    return group is not None and group["lag"] == 0 and group["pending"] == 0


def _telegram_rate(
    url: str, sizes: dict[str, int], workers: int, folder: Path
) -> tuple[float, int]:
    """The steady rate (after the first window's burst) and the most sends in one second."""
    from processpype.communications.notifier import Notifier

    chats = 10
    labels = [f"c{n}" for n in range(chats)]
    backends = {
        "bot": {
            "type": "telegram",
            "api_id": 12345,
            "api_hash": "0123456789abcdef0123456789abcdef",
            "token": "123456:BENCH-token",
            "labels": labels,
            "chats": {label: {"chat_id": str(2000 + n)} for n, label in enumerate(labels)},
            "per_chat_per_second": 1000,  # only the bot-wide limit binds
            "global_per_second": sizes["bot_rate"],
        }
    }
    settings = _settings(url, f"telegram{workers}", backends)
    out = folder / f"telegram{workers}.log"
    spec = {"config": settings, "kind": "telegram", "concurrency": 16, "out": str(out)}
    processes = [_spawn("worker", spec) for _ in range(workers)]
    try:
        _go(processes)
        with Notifier(settings) as notifier:
            for number in range(sizes["telegram"]):
                notifier.send_nowait(f"alert {number}", label=labels[number % chats])
            notifier.flush(60)
        deadline = time.monotonic() + 120
        while _count_lines(out) < sizes["telegram"] and time.monotonic() < deadline:
            time.sleep(0.01)  # polling the record of sends
    finally:
        _stop(processes)
    times = sorted(float(line) for line in out.read_text().split())
    # The window allows a burst of `limit` sends at first; the rate is measured after it.
    burst = sizes["bot_rate"]
    steady = (len(times) - burst) / (times[-1] - times[burst - 1])
    return steady, _most_in_one_second(times)


def _most_in_one_second(times: list[float]) -> int:
    most, first = 0, 0
    for last, at in enumerate(times):
        while at - times[first] >= 1.0:
            first += 1
        most = max(most, last - first + 1)
    return most


def _count_lines(path: Path) -> int:
    return path.read_text().count("\n") if path.exists() else 0


def run(size: str = "full") -> list[dict[str, Any]]:
    """Rows: enqueue throughput and latency per producer count, drain rate, Telegram rate.

    None (saying why on stderr) where redis-server is not installed.
    """
    from processpype.testing.redis import RedisTestServer, find_redis_server

    if find_redis_server() is None:
        print(
            "bench_outbox: skipped, redis-server is not installed (apt-get install redis-server)",
            file=sys.stderr,
        )
        return []
    sizes = _SIZES[size]
    rows: list[dict[str, Any]] = []
    direct_rate, direct_latencies = _direct(sizes)
    direct_p50 = statistics.median(direct_latencies) * 1e6
    direct_p99 = _percentile(direct_latencies, 0.99) * 1e6
    with RedisTestServer() as server, TemporaryDirectory() as folder:
        for producers in _PRODUCERS:
            rate, latencies = _enqueue(server.url, sizes, producers)
            p50 = statistics.median(latencies) * 1e6
            p99 = _percentile(latencies, 0.99) * 1e6
            rows.append(
                Row(
                    benchmark=f"outbox enqueue, {producers} producer process(es): throughput",
                    figure=rate,
                    unit="messages/s",
                    baselines={"direct in-process send_nowait": direct_rate},
                    ratios={"outbox/direct": rate / direct_rate},
                    target="≥ 5,000 messages/s in all (Redis has each before it is queued)",
                    met=rate >= 5000,
                ).as_dict()
            )
            rows.append(
                Row(
                    benchmark=f"outbox enqueue, {producers} producer process(es): send latency p50",
                    figure=p50,
                    unit="µs",
                    baselines={"direct send p50": direct_p50, "direct send p99": direct_p99},
                    ratios={"outbox/direct p50": p50 / direct_p50},
                    target="p50 ≤ 2 ms on loopback (Redis has the message when send returns)",
                    met=p50 <= 2000,
                    spread=f"p99 {p99:,.0f} µs over {len(latencies)} sends",
                ).as_dict()
            )
        drains: dict[int, list[tuple[float, tuple[float, float] | None]]] = {
            n: [] for n in _WORKERS
        }
        for run_number in range(sizes["rounds"]):
            for workers in _WORKERS:
                drains[workers].append(_drain(server.url, sizes, workers, run_number))
        cores = os.cpu_count() or 1
        one_worker = statistics.median(rate for rate, _ in drains[1])
        for workers in _WORKERS:
            rate = statistics.median(r for r, _ in drains[workers])
            measured = [b for _, b in drains[workers] if b is not None]
            busy = (
                f"CPU cores busy: workers {statistics.median(w for w, _ in measured):.2f}, "
                f"Redis {statistics.median(r for _, r in measured):.2f}, of {cores} "
                f"(load {os.getloadavg()[0]:.1f})"
                if measured
                else f"{cores} cores"
            )
            rows.append(
                Row(
                    benchmark=f"outbox drain, {workers} worker process(es), in-memory backend",
                    figure=rate,
                    unit="entries/s",
                    baselines={"1 worker": one_worker},
                    ratios={"this/1 worker": rate / one_worker},
                    target="more workers drain no slower (≥ 0.9x one worker)",
                    met=rate >= 0.9 * one_worker,
                    spread=f"median of {len(drains[workers])} rounds; {busy}",
                ).as_dict()
            )
        limit = float(sizes["bot_rate"])
        for workers in _WORKERS:
            rate, most = _telegram_rate(server.url, sizes, workers, Path(folder))
            rows.append(
                Row(
                    benchmark=f"Telegram via the outbox, {workers} worker(s), one bot",
                    figure=rate,
                    unit="messages/s",
                    baselines={"the bot's limit": limit},
                    ratios={"rate/limit": rate / limit},
                    target="flat at the limit (0.8x to 1.0x) whatever the worker count; "
                    "never more than the limit in one second",
                    met=0.8 * limit <= rate <= limit * 1.01 and most <= limit,
                    spread=f"most in one second: {most}",
                ).as_dict()
            )
    return rows


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--role":
        role, spec = sys.argv[2], json.loads(sys.argv[3])
        (_producer_role if role == "producer" else _worker_role)(spec)
    else:
        print_rows(run(sys.argv[1] if len(sys.argv) > 1 else "full"))
