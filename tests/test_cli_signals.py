"""The CLI's send on Ctrl-C and SIGTERM: sends under way finish (briefly) and are reported."""

from __future__ import annotations

import signal
from pathlib import Path

from test_cli import Running, write


def slow_config(tmp_path: Path, delay: float) -> Path:
    """A console backend that delivers at once (the send is under way), and a slow one."""
    return write(
        tmp_path / "slow.yaml",
        f"""
enabled: true
backends:
  fast:
    type: console
    path: {tmp_path / "out.jsonl"}
  slow:
    type: recording
    delay: {delay}
""",
    )


def test_ctrl_c_lets_a_send_under_way_finish_and_reports_it_delivered(tmp_path: Path) -> None:
    send = Running("send", "-c", str(slow_config(tmp_path, 1.0)), "backup done")
    try:
        send.stdout.wait_for(r"^fast: delivered$")
        code = send.interrupt()
    finally:
        send.kill()

    assert code == 130
    send.stdout.wait_for(r"^slow: delivered$")


def test_sigterm_lets_a_send_under_way_finish_then_exits_143(tmp_path: Path) -> None:
    send = Running("send", "-c", str(slow_config(tmp_path, 1.0)), "backup done")
    try:
        send.stdout.wait_for(r"^fast: delivered$")
        send.process.send_signal(signal.SIGTERM)
        code = send.process.wait(timeout=15)
    finally:
        send.kill()

    assert code == 143
    send.stdout.wait_for(r"^slow: delivered$")


def test_a_second_ctrl_c_stops_at_once_and_names_what_may_have_been_delivered(
    tmp_path: Path,
) -> None:
    send = Running("send", "-c", str(slow_config(tmp_path, 30)), "backup done")
    try:
        send.stdout.wait_for(r"^fast: delivered$")
        send.process.send_signal(signal.SIGINT)
        send.stderr.wait_for(r"Ctrl-C: waiting up to 5 s for slow \(Ctrl-C again to stop now\)")
        code = send.interrupt()
    finally:
        send.kill()

    assert code == 130
    assert "Traceback" not in send.stderr.rest()
