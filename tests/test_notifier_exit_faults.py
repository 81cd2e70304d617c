"""Exits real deployments see: multiprocessing children, reports of what was in flight."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

SLOW_BACKEND = """
import asyncio, sys
from processpype.communications.base import Communicator
from processpype.config.models import CommunicatorBackendConfig

class OneAtATime(Communicator):
    # Sends one message at a time, each taking a moment: a slow SMTP relay.
    lock = None

    async def start(self):
        self._started = True

    async def stop(self):
        self._started = False

    async def send(self, message):
        if OneAtATime.lock is None:
            OneAtATime.lock = asyncio.Lock()
        async with OneAtATime.lock:
            await asyncio.sleep(0.05)
            with open(sys.argv[1], "a", encoding="utf-8") as out:
                out.write(message.message + "\\n")

def slow_backend():
    return OneAtATime("slow", CommunicatorBackendConfig(type="slow"))
"""


def run_script(source: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", SLOW_BACKEND + textwrap.dedent(source), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_a_notifier_made_in_a_forked_multiprocessing_child_is_flushed_when_the_child_returns(
    tmp_path: Path,
) -> None:
    out = tmp_path / "delivered.txt"
    completed = run_script(
        """
        import multiprocessing
        from processpype import Notifier

        def child():
            notifier = Notifier({"enabled": True, "backends": {}})
            notifier.add_communicator(slow_backend())
            for index in range(10):
                notifier.send_nowait(f"child {index}")
            # returns without close(): multiprocessing ends the child with os._exit

        if __name__ == "__main__":
            process = multiprocessing.get_context("fork").Process(target=child)
            process.start()
            process.join(60)
            print("exit code", process.exitcode)
        """,
        str(out),
    )

    assert completed.stdout.strip() == "exit code 0", completed.stderr
    assert out.read_text(encoding="utf-8").splitlines() == [f"child {i}" for i in range(10)]
    # Nothing reported as undelivered. The notifier may be collected when child() returns,
    # before multiprocessing's exit: then it warns that it was not closed (shown where
    # ResourceWarning is enabled), as any dropped Notifier does.
    problems = [
        line
        for line in completed.stderr.splitlines()
        if "ResourceWarning" not in line and "return info.func(" not in line
    ]
    assert problems == []


def test_a_forked_child_loses_nothing_whether_its_notifier_is_collected_or_closed_at_exit(
    tmp_path: Path,
) -> None:
    # Either order the docs describe: one notifier is dropped and collected while the
    # child runs (it warns), the other is still referenced when multiprocessing exits.
    out = tmp_path / "delivered.txt"
    completed = run_script(
        """
        import gc, multiprocessing, warnings
        from processpype import Notifier

        kept = []

        class OwnLock(OneAtATime):
            # One lock per backend: the two notifiers run on two loops.
            async def send(self, message):
                if getattr(self, "own", None) is None:
                    self.own = asyncio.Lock()
                async with self.own:
                    await asyncio.sleep(0.05)
                    with open(sys.argv[1], "a", encoding="utf-8") as out:
                        out.write(message.message + "\\n")

        def own_backend():
            return OwnLock("slow", CommunicatorBackendConfig(type="slow"))

        def child():
            warnings.simplefilter("always", ResourceWarning)
            dropped = Notifier({"enabled": True, "backends": {}}, name="dropped")
            dropped.add_communicator(own_backend())
            for index in range(5):
                dropped.send_nowait(f"dropped {index}")
            del dropped  # still in flight: not collected until its messages have outcomes
            gc.collect()
            closed_at_exit = Notifier({"enabled": True, "backends": {}}, name="kept")
            closed_at_exit.add_communicator(own_backend())
            for index in range(5):
                closed_at_exit.send_nowait(f"kept {index}")
            kept.append(closed_at_exit)

        if __name__ == "__main__":
            process = multiprocessing.get_context("fork").Process(target=child)
            process.start()
            process.join(60)
            print("exit code", process.exitcode)
        """,
        str(out),
    )

    assert completed.stdout.strip() == "exit code 0", completed.stderr
    delivered = sorted(out.read_text(encoding="utf-8").splitlines())
    assert delivered == sorted([f"dropped {i}" for i in range(5)] + [f"kept {i}" for i in range(5)])
    assert "not delivered" not in completed.stderr
    assert "kept was never closed" not in completed.stderr  # closed by the exit flush


def test_what_a_forked_child_could_not_deliver_is_reported_on_its_stderr(tmp_path: Path) -> None:
    out = tmp_path / "delivered.txt"
    completed = run_script(
        """
        import multiprocessing
        from processpype import Notifier

        def child():
            notifier = Notifier({"enabled": True, "backends": {}}, drain_timeout=0.2)
            notifier.add_communicator(slow_backend())
            for index in range(40):
                notifier.send_nowait(f"child {index}")

        if __name__ == "__main__":
            process = multiprocessing.get_context("fork").Process(target=child)
            process.start()
            process.join(60)
        """,
        str(out),
    )

    delivered = out.read_text(encoding="utf-8").splitlines() if out.exists() else []
    assert len(delivered) < 40
    assert "at interpreter exit" in completed.stderr
    reported = completed.stderr.count("  label 'default' -> slow")
    assert len(delivered) + reported == 40 or "... and" in completed.stderr


def test_the_exit_report_lists_as_not_delivered_only_what_no_backend_had(tmp_path: Path) -> None:
    completed = run_script(
        """
        import asyncio
        from processpype import Notifier
        from processpype.communications.base import Communicator
        from processpype.config.models import CommunicatorBackendConfig

        class NeverConnects(Communicator):
            async def start(self):
                await asyncio.Event().wait()  # an SMTP server that never answers

            async def stop(self):
                pass

            async def send(self, message):
                raise AssertionError("never started")

        notifier = Notifier({"enabled": True, "backends": {}}, drain_timeout=0.3,
                            start_timeout=0.1)
        notifier.add_communicator(NeverConnects("mail", CommunicatorBackendConfig(type="x")))
        notifier.add_communicator(slow_backend(), labels=["ops"])
        notifier.send_nowait("held for mail")
        for index in range(30):
            notifier.send_nowait(f"ops {index}", label="ops")
        """,
        str(tmp_path / "delivered.txt"),
    )

    stderr = completed.stderr
    assert "1 message(s) were not delivered at interpreter exit" in stderr, stderr
    assert "label 'default' -> mail: 'held for mail'" in stderr
    assert "may have been delivered" in stderr
    assert "-> slow (may have been delivered): 'ops" in stderr


def test_a_hanging_resolver_does_not_hold_the_exit_after_close(tmp_path: Path) -> None:
    # Were the resolver's thread joined at exit, the script would take 600 s: the
    # subprocess timeout (60 s) bounds the test.
    completed = run_script(
        """
        import asyncio, socket, threading
        from processpype import Notifier
        from processpype.communications.base import Communicator
        from processpype.config.models import CommunicatorBackendConfig

        def hanging_getaddrinfo(*args, **kwargs):
            threading.Event().wait(600)  # a resolver that never answers

        socket.getaddrinfo = hanging_getaddrinfo

        class Resolving(Communicator):
            async def start(self):
                self._started = True

            async def stop(self):
                self._started = False

            async def send(self, message):
                await asyncio.get_running_loop().getaddrinfo("smtp.example.com", 25)

        notifier = Notifier({"enabled": True, "backends": {}})
        notifier.add_communicator(Resolving("smtp", CommunicatorBackendConfig(type="smtp")))
        notifier.send_nowait("stuck in DNS")
        print("closed:", notifier.close(timeout=0.2), flush=True)
        """,
        str(tmp_path / "unused.txt"),
    )

    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == "closed: False"
    assert "may have been delivered" not in completed.stdout
