"""``RedisTestServer``: a real, throwaway ``redis-server`` on 127.0.0.1 for tests.

It starts ``redis-server --port P --bind 127.0.0.1 --save "" --appendonly no`` on a free
loopback port (persistence off, so nothing is written to disk), waits until the server
answers ``PING``, and stops it at the end. ``restart()`` stops it and starts a new one on
the same port (``restart(keep_data=True)``: as a server with RDB persistence does, it saves
its data set, streams and consumer groups included, on the way down and loads it back),
and ``kill()`` ends it with SIGKILL, to test what clients do when Redis goes away and
comes back. Its working directory is a private temporary one, removed by ``stop()``.
The server is the real one, quirks included; it needs the ``redis-server`` program
(``apt-get install redis-server``), found on ``PATH`` or at ``$PROCESSPYPE_REDIS_SERVER``.
This module needs no Python Redis client.

What it does not reproduce: Redis Cluster, Sentinel, TLS, ACL users (a ``password``
sets ``requirepass``, which is the default user's password).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from typing import Self

from processpype.testing._lifecycle import StartStop

__all__ = ["RedisTestServer", "find_redis_server"]

_ENV_VAR = "PROCESSPYPE_REDIS_SERVER"
_START_TIMEOUT = 10.0
_PORT_TRIES = 5


def find_redis_server() -> str | None:
    """The path of the ``redis-server`` program, or None when it cannot be found."""
    configured = os.environ.get(_ENV_VAR)
    if configured:
        return configured if os.access(configured, os.X_OK) else None
    found = shutil.which("redis-server")
    if found:
        return found
    for candidate in ("/usr/bin/redis-server", "/usr/local/bin/redis-server"):
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class RedisTestServer(StartStop):
    """A ``redis-server`` process on 127.0.0.1 with persistence off.

    Use it as a context manager, or call ``start()`` and ``stop()``. ``url`` is the
    ``redis://`` URL of database 0 (with the password, when one is set).
    """

    def __init__(self, *, port: int | None = None, password: str | None = None) -> None:
        executable = find_redis_server()
        if executable is None:
            raise FileNotFoundError(
                "redis-server was not found on PATH (install it: apt-get install redis-server, "
                f"or set ${_ENV_VAR} to its path)"
            )
        self.executable = executable
        self._port = port
        self._password = password
        self._process: subprocess.Popen[bytes] | None = None
        self._dir: str | None = None

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"RedisTestServer(port={self._port}, {state})"

    @property
    def port(self) -> int:
        """The TCP port (known once started)."""
        if self._port is None:
            raise RuntimeError("the server has no port until start()")
        return self._port

    @property
    def url(self) -> str:
        """``redis://[:password@]127.0.0.1:PORT/0``."""
        auth = f":{self._password}@" if self._password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    @property
    def data_dir(self) -> str | None:
        """The server's private working directory (its saved data set), None when stopped."""
        return self._dir

    @property
    def running(self) -> bool:
        """True while the server process is alive."""
        return self._process is not None and self._process.poll() is None

    def start(self) -> Self:
        """Start the server and wait until it answers; returns self."""
        if self.running:
            return self
        fixed = self._port is not None
        if self._dir is None:
            self._dir = tempfile.mkdtemp(prefix="processpype-redis-")
        last_error = ""
        for _ in range(1 if fixed else _PORT_TRIES):
            # A port picked free can be taken before the server binds it: try another.
            port = self._port if fixed and self._port is not None else _free_port()
            self._port = port
            process = subprocess.Popen(  # noqa: S603 - our own argument list, no shell
                self._command(port),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            )
            self._process = process
            if self._wait_ready(process):
                return self
            last_error = self._collect_output(process)
        raise RuntimeError(f"redis-server did not start on 127.0.0.1:{self._port}: {last_error}")

    def _command(self, port: int) -> list[str]:
        command = [
            self.executable,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self._dir),
            "--daemonize",
            "no",
            "--loglevel",
            "warning",
        ]
        if self._password:
            command += ["--requirepass", self._password]
        return command

    def _wait_ready(self, process: subprocess.Popen[bytes]) -> bool:
        deadline = time.monotonic() + _START_TIMEOUT
        delay = 0.002
        while time.monotonic() < deadline:
            if process.poll() is not None:
                return False
            if self.ping():
                return True
            # Polling a local process that starts in milliseconds: a short, growing pause.
            time.sleep(delay)
            delay = min(delay * 2, 0.05)
        return False

    def _collect_output(self, process: subprocess.Popen[bytes]) -> str:
        if process.poll() is None:
            process.kill()
        try:
            output, _ = process.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            return "it did not answer and did not exit"
        text = (output or b"").decode("utf-8", "replace").strip().splitlines()
        return text[-1] if text else f"exit status {process.returncode}"

    def ping(self) -> bool:
        """True when the server answers ``PING`` (a raw RESP exchange, no client needed)."""
        try:
            return b"PONG" in self._call(b"PING")
        except OSError:
            return False

    def _call(self, *words: bytes) -> bytes:
        """Send one command (after ``AUTH`` when a password is set); the raw reply."""
        if self._port is None:
            raise ConnectionRefusedError("the server has no port until start()")
        commands: list[tuple[bytes, ...]] = (
            [(b"AUTH", self._password.encode())] if self._password else []
        )
        commands.append(words)
        request = b"".join(
            b"*%d\r\n" % len(command) + b"".join(b"$%d\r\n%s\r\n" % (len(w), w) for w in command)
            for command in commands
        )
        with socket.create_connection(("127.0.0.1", self._port), timeout=5.0) as conn:
            conn.sendall(request)
            reply = b""
            # One line per command (+OK/+PONG/-ERR); SHUTDOWN answers by closing.
            while reply.count(b"\r\n") < len(commands):
                chunk = conn.recv(256)
                if not chunk:
                    break
                reply += chunk
            return reply

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the server (SIGTERM, then SIGKILL after ``timeout``); idempotent."""
        try:
            self._halt(timeout)
        finally:
            self._remove_dir()

    def _halt(self, timeout: float) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout)
        if process.stdout is not None:
            process.stdout.close()

    def kill(self) -> None:
        """End the server at once with SIGKILL, as a crash would."""
        process, self._process = self._process, None
        if process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGKILL)
        process.wait(5.0)
        if process.stdout is not None:
            process.stdout.close()
        self._remove_dir()

    def _remove_dir(self) -> None:
        directory, self._dir = self._dir, None
        if directory is not None:
            shutil.rmtree(directory, ignore_errors=True)

    def restart(self, *, keep_data: bool = False) -> Self:
        """Stop the server and start a new one on the same port.

        By default the data is gone, as after a restart with persistence off. With
        ``keep_data`` the server saves its data set (``SHUTDOWN SAVE``) and the new one
        loads it: keys, streams, consumer groups and their pending entries come back.
        """
        if not keep_data:
            self.stop()
            return self.start()
        process = self._process
        if process is not None and process.poll() is None:
            with contextlib.suppress(OSError):
                self._call(b"SHUTDOWN", b"SAVE")
            try:
                process.wait(10.0)
            except subprocess.TimeoutExpired as exc:
                raise RuntimeError("redis-server did not shut down after SHUTDOWN SAVE") from exc
        self._halt(5.0)
        return self.start()
