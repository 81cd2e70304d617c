"""The pytest plugin: every fixture in sync tests, and in async tests under pytest-asyncio's
strict and auto modes, run as small test files by pytest's own ``pytester``."""

from __future__ import annotations

import contextlib
import importlib
import socket
import textwrap

import pytest

pytest_plugins = ["pytester"]

# Imported here once: the in-process pytest runs below forget the modules they import,
# and a second import of cryptography (under trustme) breaks its compiled bindings.
for _module in (
    "aiosmtplib",
    "cryptography.hazmat.primitives.asymmetric.ec",
    "cryptography.x509",
    "trustme",
    "httpx",
    "respx",
    "processpype.communications.backends.email",
    "processpype.communications.backends.telegram",
    "processpype.communications.backends.webhook",
    "processpype.communications.notifier",
    "processpype.testing.recording",
    "processpype.testing.smtp",
    "processpype.testing.telegram",
    "processpype.testing.webhooks",
):
    with contextlib.suppress(ImportError):  # reported by the tests that need the module
        importlib.import_module(_module)

FIXTURES = (
    "processpype_recorder",
    "processpype_smtp_server",
    "processpype_smtp_server_factory",
    "processpype_telegram",
    "processpype_notifier",
    "processpype_webhooks",
)
OPTIONAL_PACKAGES = ("aiosmtpd", "aiosmtplib", "httpx", "respx", "telethon", "trustme")
_LOOP_SCOPE = ("-o", "asyncio_default_fixture_loop_scope=function")
# hypothesis's plugin re-imports hypothesis in every in-process run (about a second each).
INNER = ("-p", "no:cacheprovider", "-p", "no:hypothesispytest")
MODES = {
    "sync": ("-p", "no:asyncio"),
    "strict": ("-p", "asyncio", "--asyncio-mode=strict", *_LOOP_SCOPE),
    "auto": ("-p", "asyncio", "--asyncio-mode=auto", *_LOOP_SCOPE),
}
ASYNC_MARK = "@ASYNC_MARK"
INSTALL_HINT = "pip install 'processpype[testing]'"

HEADER = """
from __future__ import annotations

import pytest
"""


def run_in_mode(
    pytester: pytest.Pytester, mode: str, sync_tests: str, async_tests: str
) -> pytest.RunResult:
    """Run ``sync_tests`` (and ``async_tests`` unless ``mode`` is sync) in one test file.

    In strict mode the async tests carry ``@pytest.mark.asyncio``; in auto mode they do
    not, as users of auto mode write them.
    """
    parts = [HEADER, textwrap.dedent(sync_tests)]
    if mode != "sync":
        marker = "@pytest.mark.asyncio" if mode == "strict" else ""
        parts.append(textwrap.dedent(async_tests).replace(ASYNC_MARK, marker))
    pytester.makepyfile(test_fixture="\n".join(parts))
    return pytester.runpytest(*MODES[mode], *INNER)


def expect_passed(result: pytest.RunResult, mode: str) -> None:
    """The sync test passed, and the async one too outside sync mode."""
    result.assert_outcomes(passed=1 if mode == "sync" else 2)


def run_file(pytester: pytest.Pytester, source: str, *args: str) -> pytest.RunResult:
    """Run one test file (plain pytest, tests in file order)."""
    pytester.makepyfile(test_file=HEADER + textwrap.dedent(source))
    return pytester.runpytest(*MODES["sync"], *INNER, *args)


def port_is_closed(port: int) -> bool:
    """True when nothing accepts connections on 127.0.0.1:``port``."""
    with socket.socket() as probe:
        probe.settimeout(2.0)
        return probe.connect_ex(("127.0.0.1", port)) != 0


def closed_port() -> int:
    """A port on 127.0.0.1 with nothing listening (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# -- registration ------------------------------------------------------------------------


def test_pytest_fixtures_lists_every_processpype_fixture(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--fixtures", *MODES["sync"], *INNER)

    assert result.ret == 0
    listed = result.stdout.str()
    assert [name for name in FIXTURES if name not in listed] == []


def test_plugin_is_registered_under_the_name_processpype(pytestconfig: pytest.Config) -> None:
    plugin = pytestconfig.pluginmanager.get_plugin("processpype")

    assert plugin is not None
    assert plugin.__name__ == "processpype.testing.plugin"


# -- processpype_recorder ----------------------------------------------------------------

RECORDER_SYNC = """
def test_sync(processpype_recorder, processpype_notifier):
    notifier = processpype_notifier({"enabled": True})
    notifier.add_communicator(processpype_recorder, labels=["ops"])

    assert notifier.send("disk full", label="ops").ok
    assert processpype_recorder.texts == ["disk full"]
"""
RECORDER_ASYNC = """
@ASYNC_MARK
async def test_async(processpype_recorder, processpype_notifier):
    notifier = processpype_notifier({"enabled": True})
    notifier.add_communicator(processpype_recorder, labels=["ops"])

    assert (await notifier.asend("disk full", label="ops")).ok
    assert processpype_recorder.texts == ["disk full"]
"""


@pytest.mark.parametrize("mode", MODES)
def test_recorder_records_what_a_notifier_sends(pytester: pytest.Pytester, mode: str) -> None:
    expect_passed(run_in_mode(pytester, mode, RECORDER_SYNC, RECORDER_ASYNC), mode)


def test_recorder_is_fresh_in_every_test(pytester: pytest.Pytester) -> None:
    result = run_file(
        pytester,
        """
        SEEN = []

        def test_first(processpype_recorder):
            processpype_recorder.fail_next()
            SEEN.append(processpype_recorder)

        def test_second(processpype_recorder):
            assert processpype_recorder is not SEEN[0]
            assert processpype_recorder.messages == []
        """,
    )

    result.assert_outcomes(passed=2)


# -- processpype_smtp_server ---------------------------------------------------------------

SMTP_SYNC = """
import smtplib

MAIL = "Subject: disk\\r\\n\\r\\nfull\\r\\n"

def test_sync(processpype_smtp_server):
    server = processpype_smtp_server
    with smtplib.SMTP(server.host, server.port, local_hostname="client.test") as client:
        client.sendmail("app@example.com", ["ops@example.com"], MAIL)

    [message] = server.wait_for_messages(1)
    assert message["Subject"] == "disk"
"""
SMTP_ASYNC = """
import aiosmtplib

@ASYNC_MARK
async def test_async(processpype_smtp_server):
    server = processpype_smtp_server
    await aiosmtplib.send(
        MAIL,
        sender="app@example.com",
        recipients=["ops@example.com"],
        hostname=server.host,
        port=server.port,
        use_tls=False,
        start_tls=False,
        local_hostname="client.test",
    )

    [message] = await server.wait_for_messages_async(1)
    assert message["Subject"] == "disk"
"""


@pytest.mark.parametrize("mode", MODES)
def test_smtp_server_receives_real_mail(pytester: pytest.Pytester, mode: str) -> None:
    expect_passed(run_in_mode(pytester, mode, SMTP_SYNC, SMTP_ASYNC), mode)


def test_smtp_server_is_stopped_after_the_test(pytester: pytest.Pytester) -> None:
    ports = pytester.path / "ports.txt"
    result = run_file(
        pytester,
        f"""
        def test_uses_server(processpype_smtp_server):
            with open({str(ports)!r}, "w") as out:
                out.write(str(processpype_smtp_server.port))
        """,
    )

    result.assert_outcomes(passed=1)
    assert port_is_closed(int(ports.read_text()))


def test_smtp_server_receives_mail_from_a_notifier(pytester: pytest.Pytester) -> None:
    result = run_file(
        pytester,
        """
        def test_alert(processpype_smtp_server, processpype_notifier):
            mail = processpype_smtp_server.email_config(default_recipients=["ops@example.com"])
            notifier = processpype_notifier({"enabled": True, "backends": {"mail": mail}})

            notifier.send("disk full", subject="Disk").raise_for_errors()

            [message] = processpype_smtp_server.wait_for_messages(1)
            assert message["Subject"] == "Disk"
            assert message["To"] == "ops@example.com"
            assert message.get_content().strip() == "disk full"
        """,
    )

    result.assert_outcomes(passed=1)


# -- processpype_smtp_server_factory -------------------------------------------------------

SMTP_FACTORY_SYNC = """
import smtplib

MAIL = "Subject: disk\\r\\n\\r\\nfull\\r\\n"

def test_sync(processpype_smtp_server_factory):
    server = processpype_smtp_server_factory(tls="starttls", auth=("alice", "s3cret"))
    with smtplib.SMTP(server.host, server.port, local_hostname="client.test") as client:
        client.starttls(context=server.client_ssl_context())
        client.login("alice", "s3cret")
        client.sendmail("app@example.com", ["ops@example.com"], MAIL)

    [envelope] = server.envelopes
    assert (envelope.tls, envelope.username) == (True, "alice")
"""
# smtplib on a worker thread, not aiosmtplib.send: over implicit TLS, aiosmtplib returns
# before the TLS close handshake ends, and the test's loop closes under it, leaking the
# client socket (a ResourceWarning that surfaces in whichever test collects it).
SMTP_FACTORY_ASYNC = """
import asyncio

@ASYNC_MARK
async def test_async(processpype_smtp_server_factory):
    server = processpype_smtp_server_factory(tls="implicit", auth=("alice", "s3cret"))

    def send():
        with smtplib.SMTP_SSL(
            server.host,
            server.port,
            local_hostname="client.test",
            context=server.client_ssl_context(),
        ) as client:
            client.login("alice", "s3cret")
            client.sendmail("app@example.com", ["ops@example.com"], MAIL)

    await asyncio.to_thread(send)

    [envelope] = server.envelopes
    assert (envelope.tls, envelope.username) == (True, "alice")
"""


@pytest.mark.parametrize("mode", MODES)
def test_smtp_server_factory_serves_tls_with_auth(pytester: pytest.Pytester, mode: str) -> None:
    expect_passed(run_in_mode(pytester, mode, SMTP_FACTORY_SYNC, SMTP_FACTORY_ASYNC), mode)


def test_smtp_server_factory_stops_every_server_it_started(pytester: pytest.Pytester) -> None:
    ports = pytester.path / "ports.txt"
    result = run_file(
        pytester,
        f"""
        def test_uses_servers(processpype_smtp_server_factory):
            servers = [
                processpype_smtp_server_factory(),
                processpype_smtp_server_factory(tls="starttls"),
                processpype_smtp_server_factory(tls="implicit", auth=("a", "b")),
            ]
            with open({str(ports)!r}, "w") as out:
                out.write(" ".join(str(server.port) for server in servers))
        """,
    )

    result.assert_outcomes(passed=1)
    assert [port_is_closed(int(port)) for port in ports.read_text().split()] == [True] * 3


def test_smtp_server_factory_refuses_an_unknown_option(pytester: pytest.Pytester) -> None:
    result = run_file(
        pytester,
        """
        def test_bad_option(processpype_smtp_server_factory):
            with pytest.raises(ValueError, match="tls must be"):
                processpype_smtp_server_factory(tls="ssl")
        """,
    )

    result.assert_outcomes(passed=1)


# -- processpype_telegram ------------------------------------------------------------------

TELEGRAM_YAML = """
enabled: true
backends:
  tg:
    type: telegram
    api_id: 12345
    api_hash: test-hash
    token: "123456:TEST"
    retry_base_delay: 0.01
    chats:
      default:
        chat_id: "-1001234567890"
"""
TELEGRAM_SYNC = f"""
YAML = '''{TELEGRAM_YAML}'''

def test_sync(processpype_telegram, processpype_notifier, tmp_path):
    path = tmp_path / "notify.yaml"
    path.write_text(YAML)
    notifier = processpype_notifier(path)

    notifier.send("deploy finished").raise_for_errors()

    [sent] = processpype_telegram.wait_for_sent(1)
    assert (sent.chat, sent.text) == (-1001234567890, "deploy finished")
"""
TELEGRAM_ASYNC = """
@ASYNC_MARK
async def test_async(processpype_telegram, processpype_notifier, tmp_path):
    path = tmp_path / "notify.yaml"
    path.write_text(YAML)
    notifier = processpype_notifier(path)

    (await notifier.asend("deploy finished")).raise_for_errors()

    [sent] = processpype_telegram.sent
    assert (sent.chat, sent.text) == (-1001234567890, "deploy finished")
"""


@pytest.mark.parametrize("mode", MODES)
def test_telegram_fake_serves_every_notifier_from_yaml(
    pytester: pytest.Pytester, mode: str
) -> None:
    expect_passed(run_in_mode(pytester, mode, TELEGRAM_SYNC, TELEGRAM_ASYNC), mode)


def test_telegram_client_factory_is_restored_after_the_test(pytester: pytest.Pytester) -> None:
    result = run_file(
        pytester,
        """
        from processpype.communications.backends import telegram

        ORIGINAL = telegram.set_default_client_factory(None)
        telegram.set_default_client_factory(ORIGINAL)

        def test_uses_fake(processpype_telegram):
            pass

        def test_factory_restored():
            current = telegram.set_default_client_factory(ORIGINAL)
            assert current is ORIGINAL
        """,
    )

    result.assert_outcomes(passed=2)


def test_telegram_fake_plays_incoming_commands(pytester: pytest.Pytester) -> None:
    result = run_file(
        pytester,
        """
        import threading

        YAML = \'\'\'
        enabled: true
        backends:
          tg:
            type: telegram
            api_id: 12345
            api_hash: test-hash
            token: "123456:TEST"
            listen_to_commands: true
            session_path: ${SESSION_DIR}
            chats:
              default:
                chat_id: "-1001234567890"
                command_authorized: true
        \'\'\'

        def test_command(processpype_telegram, processpype_notifier, tmp_path):
            path = tmp_path / "notify.yaml"
            path.write_text(YAML)
            notifier = processpype_notifier(path, env={"SESSION_DIR": str(tmp_path)})
            got = []
            arrived = threading.Event()
            notifier.on_message(lambda message: (got.append(message.text), arrived.set()))

            processpype_telegram.inject_message(-1001234567890, "/status", sender_id=42)

            assert arrived.wait(5.0)
            assert got == ["/status"]
        """,
    )

    result.assert_outcomes(passed=1)


# -- processpype_notifier ------------------------------------------------------------------

NOTIFIER_SYNC = """
def test_sync(processpype_notifier):
    notifier = processpype_notifier({"enabled": True, "backends": {"rec": {"type": "recording"}}})

    notifier.send("disk full").raise_for_errors()

    assert notifier.communicator("rec").texts == ["disk full"]
"""
NOTIFIER_ASYNC = """
@ASYNC_MARK
async def test_async(processpype_notifier):
    notifier = processpype_notifier({"enabled": True, "backends": {"rec": {"type": "recording"}}})

    (await notifier.asend("disk full")).raise_for_errors()

    assert notifier.communicator("rec").texts == ["disk full"]
"""


@pytest.mark.parametrize("mode", MODES)
def test_notifier_factory_builds_from_a_mapping(pytester: pytest.Pytester, mode: str) -> None:
    expect_passed(run_in_mode(pytester, mode, NOTIFIER_SYNC, NOTIFIER_ASYNC), mode)


def test_notifier_factory_loads_yaml_from_str_and_pathlike_paths(
    pytester: pytest.Pytester,
) -> None:
    result = run_file(
        pytester,
        """
        YAML = '''
        enabled: true
        backends:
          rec:
            type: recording
            labels: ["${ALERT_LABEL}"]
        '''

        @pytest.mark.parametrize("as_text", [True, False])
        @pytest.mark.parametrize("suffix", [".yaml", ".yml"])
        def test_yaml(processpype_notifier, tmp_path, as_text, suffix):
            path = tmp_path / f"notify{suffix}"
            path.write_text(YAML)
            source = str(path) if as_text else path
            notifier = processpype_notifier(source, env={"ALERT_LABEL": "ops"})

            notifier.send("disk full", label="ops").raise_for_errors()

            assert notifier.communicator("rec").texts == ["disk full"]
        """,
    )

    result.assert_outcomes(passed=4)


def test_notifier_factory_builds_from_a_config_model(pytester: pytest.Pytester) -> None:
    result = run_file(
        pytester,
        """
        from processpype.config.loader import config_from_mapping

        def test_model(processpype_notifier):
            backends = {"rec": {"type": "recording"}}
            config = config_from_mapping({"enabled": True, "backends": backends})
            notifier = processpype_notifier(config)

            notifier.send("disk full").raise_for_errors()

            assert notifier.config == config
        """,
    )

    result.assert_outcomes(passed=1)


def test_notifier_factory_refuses_a_string_that_is_not_a_yaml_path(
    pytester: pytest.Pytester,
) -> None:
    result = run_file(
        pytester,
        """
        def test_bad(processpype_notifier):
            with pytest.raises(ValueError, match=r"'notify\\.conf' is neither a config mapping"):
                processpype_notifier("notify.conf")
        """,
    )

    result.assert_outcomes(passed=1)


def test_notifier_factory_closes_every_notifier_after_the_test(pytester: pytest.Pytester) -> None:
    result = run_file(
        pytester,
        """
        MADE = []

        def test_make(processpype_notifier):
            for _ in range(3):
                MADE.append(processpype_notifier({"enabled": True}))
            assert not any(notifier.closed for notifier in MADE)

        def test_closed():
            assert [notifier.closed for notifier in MADE] == [True, True, True]
        """,
    )

    result.assert_outcomes(passed=2)


def test_notifier_closed_early_by_the_test_is_fine_at_teardown(pytester: pytest.Pytester) -> None:
    result = run_file(
        pytester,
        """
        def test_close_early(processpype_notifier):
            with processpype_notifier({"enabled": True}) as notifier:
                pass
            assert notifier.closed
        """,
    )

    result.assert_outcomes(passed=1)


# -- teardown order: queued messages reach the test doubles ---------------------------------


def test_mail_queued_at_the_end_of_a_test_reaches_the_smtp_server(
    pytester: pytest.Pytester,
) -> None:
    result = run_file(
        pytester,
        """
        SERVERS = []

        # The notifier is requested first, so pytest would tear it down last: the
        # fixtures still close it before the server stops.
        def test_send_late(processpype_notifier, processpype_smtp_server):
            mail = processpype_smtp_server.email_config()
            notifier = processpype_notifier({"enabled": True, "backends": {"mail": mail}})
            for number in range(3):
                notifier.send_nowait(f"late {number}")
            SERVERS.append(processpype_smtp_server)

        def test_all_arrived():
            texts = [m.get_content().strip() for m in SERVERS[0].messages]
            assert sorted(texts) == ["late 0", "late 1", "late 2"]
        """,
    )

    result.assert_outcomes(passed=2)


def test_posts_queued_at_the_end_of_a_test_are_captured_not_sent(
    pytester: pytest.Pytester,
) -> None:
    url = f"http://127.0.0.1:{closed_port()}/hook"
    result = run_file(
        pytester,
        f"""
        CAPTURES = []

        def test_send_late(processpype_notifier, processpype_webhooks):
            hook = {{"type": "webhook", "url": {url!r}, "retry_base_delay": 0.01}}
            notifier = processpype_notifier({{"enabled": True, "backends": {{"hook": hook}}}})
            for number in range(3):
                notifier.send_nowait(f"late {{number}}")
            CAPTURES.append(processpype_webhooks)

        def test_all_captured():
            assert sorted(body["message"] for body in CAPTURES[0].json_bodies) == [
                "late 0", "late 1", "late 2"
            ]
        """,
    )

    result.assert_outcomes(passed=2)


# -- processpype_webhooks ------------------------------------------------------------------

WEBHOOKS_SYNC = """
CONFIG = {
    "enabled": True,
    "backends": {"hook": {"type": "webhook", "url": "https://hooks.example.test/alerts/s3cret"}},
}

def test_sync(processpype_webhooks, processpype_notifier):
    notifier = processpype_notifier(CONFIG)

    notifier.send("disk full", label="default").raise_for_errors()

    [request] = processpype_webhooks.requests
    assert (request.method, request.url) == ("POST", "https://hooks.example.test/alerts/s3cret")
    assert request.json["message"] == "disk full"
"""
WEBHOOKS_ASYNC = """
@ASYNC_MARK
async def test_async(processpype_webhooks, processpype_notifier):
    notifier = processpype_notifier(CONFIG)

    (await notifier.asend("disk full")).raise_for_errors()

    assert [body["message"] for body in processpype_webhooks.json_bodies] == ["disk full"]
"""


@pytest.mark.parametrize("mode", MODES)
def test_webhooks_capture_what_a_notifier_posts(pytester: pytest.Pytester, mode: str) -> None:
    expect_passed(run_in_mode(pytester, mode, WEBHOOKS_SYNC, WEBHOOKS_ASYNC), mode)


def test_webhooks_scripted_failure_reaches_the_report(pytester: pytest.Pytester) -> None:
    result = run_file(
        pytester,
        """
        def test_rejected(processpype_webhooks, processpype_notifier):
            processpype_webhooks.respond(status=400, json={"error": "bad payload"})
            hook = {"type": "webhook", "url": "https://hooks.example.test/alerts"}
            notifier = processpype_notifier({"enabled": True, "backends": {"hook": hook}})

            report = notifier.send("disk full")

            assert [r.status for r in report.results] == ["failed"]
            assert "400" in report.results[0].error
        """,
    )

    result.assert_outcomes(passed=1)


def test_webhooks_capture_is_stopped_after_the_test(pytester: pytest.Pytester) -> None:
    url = f"http://127.0.0.1:{closed_port()}/hook"
    result = run_file(
        pytester,
        f"""
        import httpx

        def test_captured(processpype_webhooks):
            assert httpx.post({url!r}, json={{}}).status_code == 200

        def test_real_network_again():
            with pytest.raises(httpx.ConnectError):
                httpx.post({url!r}, json={{}})
        """,
    )

    result.assert_outcomes(passed=2)


# -- without the testing extra -----------------------------------------------------------

BLOCK_OPTIONAL_PACKAGES = f"""
import sys

BLOCKED = {OPTIONAL_PACKAGES!r}
already = sorted(name for name in BLOCKED if name in sys.modules)
assert not already, f"imported before any fixture ran: {{already}}"


class BlockOptionalPackages:
    # Behave as if the testing extra was not installed.
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None


sys.meta_path.insert(0, BlockOptionalPackages())
"""


def run_without_optional_packages(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    """Run pytest in a fresh process where the optional packages cannot be imported."""
    pytester.makeconftest(BLOCK_OPTIONAL_PACKAGES)
    # respx and anyio ship pytest plugins (respx's imports httpx); a user without the
    # testing extra has neither.
    return pytester.runpytest_subprocess(
        *MODES["sync"], *INNER, "-p", "no:respx", "-p", "no:anyio", *args
    )


def test_plugin_loads_without_importing_optional_packages(pytester: pytest.Pytester) -> None:
    result = run_without_optional_packages(pytester, "--fixtures")

    assert result.ret == 0, result.stderr.str()
    listed = result.stdout.str()
    assert [name for name in FIXTURES if name not in listed] == []


def test_pytest_runs_tests_without_the_testing_extra(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_plain="""
        def test_arithmetic():
            assert 1 + 1 == 2

        def test_recorder(processpype_recorder):
            assert processpype_recorder.messages == []
        """
    )

    result = run_without_optional_packages(pytester)

    result.assert_outcomes(passed=2)


@pytest.mark.parametrize(
    ("fixture", "package"),
    [
        ("processpype_smtp_server", "aiosmtpd"),
        ("processpype_smtp_server_factory", "aiosmtpd"),
        ("processpype_telegram", "telethon"),
        ("processpype_webhooks", "httpx"),
    ],
)
def test_fixture_without_its_package_says_what_to_install(
    pytester: pytest.Pytester, fixture: str, package: str
) -> None:
    pytester.makepyfile(test_needs_extra=f"def test_it({fixture}):\n    pass\n")

    result = run_without_optional_packages(pytester)

    result.assert_outcomes(errors=1)
    output = result.stdout.str()
    assert f"need the '{package}' package, which is not installed: {INSTALL_HINT}" in output
    assert "Traceback" not in output
