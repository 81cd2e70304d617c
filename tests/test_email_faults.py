"""Email backend under faults: temporary and permanent replies, drops, outages, load."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator

import pytest
from email_helpers import backend, message, retry_signal

from processpype.communications.dispatcher import CommunicationDispatcher
from processpype.communications.errors import BackendStartError, SendError
from processpype.testing.smtp import SMTPTestServer


@pytest.fixture
def server() -> Iterator[SMTPTestServer]:
    with SMTPTestServer() as running:
        yield running


def bodies(server: SMTPTestServer) -> list[str]:
    return [m.get_content().strip() for m in server.messages]


@pytest.mark.asyncio
async def test_temporary_refusal_is_retried_and_delivered_exactly_once(
    server: SMTPTestServer,
) -> None:
    server.fail_next(code=451)
    mail = backend(server)
    result = await mail.deliver(message("once"))
    assert result.status == "delivered"
    assert result.attempts == 2
    assert bodies(server) == ["once"]
    await mail.stop()


@pytest.mark.asyncio
async def test_permanent_refusal_fails_after_one_attempt(server: SMTPTestServer) -> None:
    server.fail_next(code=554)
    mail = backend(server, max_attempts=5)
    with pytest.raises(SendError) as failed:
        await mail.send(message())
    assert failed.value.permanent
    assert failed.value.attempts == 1
    assert "DATA" in str(failed.value)
    assert "554" in str(failed.value)
    assert server.messages == []
    await mail.stop()


@pytest.mark.asyncio
async def test_temporary_refusals_past_max_attempts_fail_as_temporary(
    server: SMTPTestServer,
) -> None:
    server.fail_next(count=3, code=452)
    mail = backend(server, max_attempts=3)
    with pytest.raises(SendError) as failed:
        await mail.send(message())
    assert not failed.value.permanent
    assert failed.value.attempts == 3
    assert "452" in str(failed.value)
    await mail.stop()


@pytest.mark.asyncio
async def test_a_drop_every_seventh_message_still_delivers_all_hundred(
    server: SMTPTestServer,
) -> None:
    mail = backend(server)
    await mail.start()
    for number in range(100):
        if number % 7 == 6:
            server.disconnect_next()
        await mail.send(message(f"message {number}"))
    await mail.stop()
    assert bodies(server) == [f"message {number}" for number in range(100)]


@pytest.mark.asyncio
async def test_a_connection_the_server_closed_is_reopened(server: SMTPTestServer) -> None:
    mail = backend(server, max_attempts=1)
    await mail.send(message("before"))
    await asyncio.to_thread(server.restart)  # drops the open connection
    result = await mail.deliver(message("after"))
    assert result.status == "delivered"
    assert bodies(server) == ["before", "after"]
    await mail.stop()


@pytest.mark.asyncio
async def test_sequential_sends_reuse_one_connection(server: SMTPTestServer) -> None:
    mail = backend(server)
    for number in range(10):
        await mail.send(message(str(number)))
    await mail.stop()
    assert server.connection_count == 1
    assert mail.connections_opened == 1


@pytest.mark.asyncio
async def test_fifty_concurrent_sends_share_one_connection(server: SMTPTestServer) -> None:
    mail = backend(server)
    await mail.start()
    results = await asyncio.gather(*(mail.deliver(message(f"n{n}")) for n in range(50)))
    await mail.stop()
    assert all(result.status == "delivered" for result in results)
    assert server.connection_count == 1
    assert sorted(bodies(server)) == sorted(f"n{n}" for n in range(50))


@pytest.mark.asyncio
async def test_concurrent_sends_go_out_in_the_order_they_were_handed_over(
    server: SMTPTestServer,
) -> None:
    mail = backend(server)
    await asyncio.gather(*(mail.send(message(f"n{n}")) for n in range(20)))
    await mail.stop()
    assert bodies(server) == [f"n{n}" for n in range(20)]


@pytest.mark.asyncio
async def test_an_outage_shorter_than_the_retry_budget_delivers_after_recovery(
    server: SMTPTestServer,
) -> None:
    mail = backend(server, max_attempts=6, retry_base_delay=0.05)
    await mail.start()
    await asyncio.to_thread(server.stop)
    with retry_signal() as retried:
        sending = asyncio.create_task(mail.deliver(message("survived")))
        assert await asyncio.to_thread(retried.wait, 5)
        await asyncio.to_thread(server.restart)
        result = await sending
    assert result.status == "delivered"
    assert result.attempts >= 2
    assert bodies(server) == ["survived"]
    await mail.stop()


@pytest.mark.asyncio
async def test_an_outage_longer_than_the_retry_budget_fails_and_is_reported(
    server: SMTPTestServer,
) -> None:
    dispatcher = CommunicationDispatcher()
    mail = backend(server, max_attempts=3, retry_base_delay=0.01)
    dispatcher.register(mail)
    await dispatcher.start_all()
    await asyncio.to_thread(server.stop)
    report = await dispatcher.deliver(message("lost"))
    [result] = report.results
    assert result.status == "failed"
    assert result.attempts == 3
    assert f"connect at 127.0.0.1:{server.port}" in str(result.error)
    assert "cannot reach the server" in str(result.error)
    await dispatcher.stop_all()


@pytest.mark.asyncio
async def test_start_against_an_unreachable_server_raises_a_clear_error(
    server: SMTPTestServer,
) -> None:
    await asyncio.to_thread(server.stop)
    mail = backend(server)
    with pytest.raises(BackendStartError) as failed:
        await mail.start()
    assert f"connect at 127.0.0.1:{server.port}" in str(failed.value)
    assert isinstance(failed.value, ConnectionError)


@pytest.mark.asyncio
async def test_a_server_that_comes_up_after_start_still_gets_the_mail(
    server: SMTPTestServer,
) -> None:
    await asyncio.to_thread(server.stop)
    mail = backend(server)
    with pytest.raises(BackendStartError):
        await mail.start()
    await asyncio.to_thread(server.restart)
    result = await mail.deliver(message("late but there"))
    assert result.status == "delivered"
    assert bodies(server) == ["late but there"]
    await mail.stop()


@pytest.mark.asyncio
async def test_a_server_that_never_answers_times_out_instead_of_hanging() -> None:
    with socket.socket() as silent:  # accepts TCP connections, never says hello
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        with SMTPTestServer() as unused:
            mail = backend(unused, port=port, timeout=0.2, max_attempts=1)
        with pytest.raises(SendError, match="timed out") as failed:
            await asyncio.wait_for(mail.send(message()), timeout=5)
    assert f"127.0.0.1:{port}" in str(failed.value)
    assert not failed.value.permanent


@pytest.mark.asyncio
async def test_a_cancelled_send_leaves_the_backend_usable() -> None:
    with socket.socket() as silent:  # accepts the connection, never says hello
        silent.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        with SMTPTestServer() as unused:
            mail = backend(unused, port=port, timeout=30)
        sending = asyncio.create_task(mail.send(message("cancelled")))
        accepted, _ = await asyncio.to_thread(silent.accept)  # the send is mid-connect
        sending.cancel()
        with pytest.raises(asyncio.CancelledError):
            await sending
        accepted.close()
    with SMTPTestServer(port=port) as server:
        result = await mail.deliver(message("after the cancel"))
        await mail.stop()
    assert result.status == "delivered"
    assert bodies(server) == ["after the cancel"]


@pytest.mark.asyncio
@pytest.mark.parametrize("tls", ["starttls", "implicit"])
async def test_a_drop_over_tls_is_retried_on_a_new_connection(tls: str) -> None:
    with SMTPTestServer(tls=tls) as secure:  # type: ignore[arg-type]
        mail = backend(secure)
        await mail.send(message("first"))
        secure.disconnect_next()
        result = await mail.deliver(message("second"))
        await mail.stop()
    assert result.status == "delivered"
    assert bodies(secure) == ["first", "second"]
    assert secure.connection_count == 2


@pytest.mark.asyncio
async def test_a_send_cancelled_during_login_closes_its_connection() -> None:
    auth_started = asyncio.Event()
    client_left = asyncio.Event()

    async def stalls_at_auth(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 stalling.test ESMTP\r\n")
        while line := await reader.readline():
            if line.upper().startswith(b"EHLO"):
                writer.write(b"250-stalling.test\r\n250 AUTH PLAIN LOGIN\r\n")
            elif line.upper().startswith(b"AUTH"):
                auth_started.set()  # and never answer
                break
        await reader.read()  # returns once the client has closed the connection
        client_left.set()
        writer.close()

    stalling = await asyncio.start_server(stalls_at_auth, "127.0.0.1", 0)
    port = stalling.sockets[0].getsockname()[1]
    with SMTPTestServer() as unused:
        mail = backend(unused, port=port, username="u", password="p", timeout=30)
    sending = asyncio.create_task(mail.send(message()))
    await asyncio.wait_for(auth_started.wait(), timeout=5)
    sending.cancel()
    with pytest.raises(asyncio.CancelledError):
        await sending
    await asyncio.wait_for(client_left.wait(), timeout=5)
    stalling.close()
    await stalling.wait_closed()


@pytest.mark.asyncio
async def test_sends_cut_off_by_stop_fail_instead_of_reconnecting() -> None:
    connections = 0
    data_started = asyncio.Event()

    async def stalls_at_data(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        writer.write(b"220 stalling.test ESMTP\r\n")
        while line := await reader.readline():
            command = line.upper()
            if command.startswith(b"EHLO"):
                writer.write(b"250 stalling.test\r\n")
            elif command.startswith((b"MAIL", b"RCPT")):
                writer.write(b"250 OK\r\n")
            elif command.startswith(b"DATA"):
                writer.write(b"354 go ahead\r\n")
                data_started.set()  # and never answer the message
        writer.close()

    stalling = await asyncio.start_server(stalls_at_data, "127.0.0.1", 0)
    port = stalling.sockets[0].getsockname()[1]
    with SMTPTestServer() as unused:
        mail = backend(unused, port=port, timeout=0.3, max_attempts=3)
    first = asyncio.create_task(mail.send(message("in flight")))
    second = asyncio.create_task(mail.send(message("waiting")))
    await asyncio.wait_for(data_started.wait(), timeout=5)
    await mail.stop()  # gives up on the send in flight after `timeout`
    outcomes = await asyncio.gather(first, second, return_exceptions=True)
    assert all(isinstance(outcome, SendError) for outcome in outcomes)
    assert "stopped" in str(outcomes[1])
    assert connections == 1
    assert not mail.connected
    stalling.close()
    await stalling.wait_closed()
