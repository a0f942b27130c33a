"""keepalived state changes from its log (with Docker timestamps), old and new wording."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from bench.collect import vrrp

DATA = Path(__file__).parent / "data" / "collect"


def epoch(text: str) -> float:
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC).timestamp()


def test_recorded_keepalived_log() -> None:
    events = vrrp.parse_keepalived_log((DATA / "keepalived_lb-a.log").read_text())
    assert [(state, instance) for _, state, instance in events] == [("BACKUP", "lbbench"), ("MASTER", "lbbench")]
    assert events[0][0] == pytest.approx(epoch("2026-11-26T13:02:16.001231"), abs=1e-6)
    assert events[1][0] == pytest.approx(epoch("2026-11-26T13:02:19.415295"), abs=1e-6)


@pytest.mark.parametrize(
    ("message", "state", "instance"),
    [
        ("(lbbench) Entering FAULT STATE", "FAULT", "lbbench"),
        ("(lbbench) Entering BACKUP STATE (init)", "BACKUP", "lbbench"),
        ("(VI_1) entering FAULT state (tracked process haproxy quorum not achieved)", "FAULT", "VI_1"),
        ("VRRP_Instance(VI_1) Entering MASTER STATE", "MASTER", "VI_1"),
        ("Stopping", "STOP", ""),
        ("Stopping Keepalived v2.2.7 (01/16,2022)", "STOP", ""),
    ],
)
def test_state_lines(message: str, state: str, instance: str) -> None:
    line = f"2026-11-26T13:00:13.945317601Z Thu Nov 26 13:00:13 2026: {message}\n"
    assert vrrp.parse_keepalived_log(line) == [(pytest.approx(epoch("2026-11-26T13:00:13.945317")), state, instance)]


@pytest.mark.parametrize(
    "message",
    [
        "(lbbench) Receive advertisement timeout",
        "(lbbench) setting VIPs.",
        "Stopped - used (self/children) 0.017389/1.327960 user time",
        "Stopped Keepalived v2.2.7 (01/16,2022)",
        "Script `frontend_alive` now returning 1",
    ],
)
def test_other_lines_are_no_events(message: str) -> None:
    assert vrrp.parse_keepalived_log(f"2026-11-26T13:00:13.945317601Z Thu Nov 26 13:00:13 2026: {message}\n") == []


def test_lines_without_docker_timestamp_are_skipped() -> None:
    assert vrrp.parse_keepalived_log("Thu Nov 26 13:00:13 2026: (lbbench) Entering MASTER STATE\n") == []


def test_timestamp_zones() -> None:
    assert vrrp.parse_docker_timestamp("2026-11-26T13:00:13", "5", "Z") == pytest.approx(epoch("2026-11-26T13:00:13.5"))
    assert vrrp.parse_docker_timestamp("2026-11-26T14:00:13", None, "+01:00") == pytest.approx(epoch("2026-11-26T13:00:13"))
