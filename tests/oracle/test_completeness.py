"""The oracle closes a QH when it is complete, not when the watermark passes (issue 13).

Every expected accounting flow of the community (registry: send frequency + derogation) delivered
the QH -> it is anchored at once, one version; a flow still missing is waited for until the
community's event-time watermark passes its declared lateness and the flow has moved past the QH
or stayed silent (wall clock); a flow that is sending but behind is waited for; late data still makes
version n+1.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from lec.registry import Registry
from oracle.qh import ExpectedFlow, QhWindows, expected_from_snapshot
from tests.conftest import EXAMPLE_COMMUNITY
from tests.support.oracle_env import COMMUNITY, QH0, reading

DAY = 86400
EXPECTED = (ExpectedFlow("f-anna-load", 900 + 3600), ExpectedFlow("f-bruno-load", DAY + DAY),
            ExpectedFlow("f-bruno-pv", 3600 + 7200))


class Clock:
    """A wall clock the test moves by hand (the silence rule is in wall seconds)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def windows(clock: Clock | None = None) -> QhWindows:
    return QhWindows(300, expected=lambda c: EXPECTED if c == COMMUNITY else None, silence_s=300,
                     clock=clock or Clock())


def settle(w: QhWindows) -> list[int]:
    due = w.due()
    for b in due:
        b.settled_revision = b.revision
    return [b.qh for b in due]


def test_a_complete_qh_is_anchored_at_once_and_only_once() -> None:
    w = windows()
    w.add(reading("f-anna-load", QH0, 5))
    w.add(reading("f-bruno-pv", QH0, -3))
    w.add(reading("f-anna-load", QH0 + 3 * 900, 5))       # the watermark passes QH0 + 900 + grace ...
    assert settle(w) == []                                 # ... but the utility's daily file is still due
    w.add(reading("f-bruno-load", QH0, 7))                 # the daily file arrives: complete
    assert settle(w) == [QH0]
    assert settle(w) == []


def test_a_flow_delivering_in_parts_completes_when_it_covers_the_qh() -> None:
    w = windows()
    for flow in ("f-bruno-load", "f-bruno-pv"):
        w.add(reading(flow, QH0, 1))
    w.add(reading("f-anna-load", QH0, 5, interval=450))
    assert settle(w) == []
    w.add(reading("f-anna-load", QH0 + 450, 5, interval=450))
    assert settle(w) == [QH0]


def test_a_silent_missing_flow_is_given_up_after_its_lateness_and_the_silence() -> None:
    clock = Clock()
    w = windows(clock)
    w.add(reading("f-anna-load", QH0, 5))
    w.add(reading("f-bruno-load", QH0, 7))
    w.add(reading("f-anna-load", QH0 + 900 + 3 * 3600 - 900, 5, msg="wm1"))     # PV waits 3 h
    clock.now += 3600
    assert settle(w) == []                                 # event time has not passed PV's wait
    w.add(reading("f-anna-load", QH0 + 900 + 3 * 3600, 5, msg="wm2"))
    clock.now += 3600
    assert QH0 in settle(w)                                # passed, and PV silent for an hour
    w.add(reading("f-bruno-pv", QH0, -3))                  # late data: version n+1
    assert QH0 in settle(w)


def test_a_flow_that_is_sending_but_behind_is_waited_for() -> None:
    """A replay or a backlog: PV's data arrives after the loads' (event time far ahead) but it keeps
    arriving, so the QH waits and its first version already holds PV (one anchor, not two)."""
    clock = Clock()
    w = windows(clock)
    w.add(reading("f-anna-load", QH0, 5))
    w.add(reading("f-bruno-load", QH0, 7))
    w.add(reading("f-anna-load", QH0 + 2 * DAY, 5, msg="wm"))     # event time two days ahead
    w.add(reading("f-bruno-pv", QH0 - 3600, -1, msg="pv-old"))    # PV is sending, an hour behind
    clock.now += 60
    assert settle(w) == []
    w.add(reading("f-bruno-pv", QH0, -3))
    assert settle(w) == [QH0]


def test_a_flow_whose_own_data_moved_past_the_qh_is_a_gap() -> None:
    clock = Clock()
    w = windows(clock)
    w.add(reading("f-anna-load", QH0, 5))
    w.add(reading("f-bruno-load", QH0, 7))
    w.add(reading("f-bruno-pv", QH0 + 900 + 3 * 3600, -1, msg="pv-later"))    # PV skipped QH0 and moved on
    assert settle(w) == [QH0]                              # no wall-clock wait needed


def test_without_expected_flows_the_watermark_and_grace_close_as_before() -> None:
    w = QhWindows(300, expected=lambda c: None)
    w.add(reading("f-anna-load", QH0, 5))
    w.add(reading("f-anna-load", QH0 + 1200, 1, msg="wm"))
    assert settle(w) == [QH0]


def test_expected_flows_come_from_the_registry(tmp_path) -> None:
    reg = Registry(f"sqlite:///{tmp_path / 'r.db'}")
    reg.migrate()
    reg.load_file(EXAMPLE_COMMUNITY)
    snap = reg.snapshot()
    flows = dict(snap.flows)
    flows["f-bruno-load"] = replace(flows["f-bruno-load"], send_frequency_s=DAY, derogation_s=3600)
    flows["f-anna-load"] = replace(flows["f-anna-load"], end_ts=datetime.fromtimestamp(QH0, UTC))
    got = expected_from_snapshot(lambda: replace(snap, flows=flows))(COMMUNITY)
    by_id = {e.flow_id: e for e in got}
    assert set(by_id) == {"f-anna-load", "f-bruno-load", "f-bruno-pv"}       # accounting flows only
    assert by_id["f-bruno-load"].wait_s == DAY + 3600 and by_id["f-bruno-pv"].wait_s == 0
    assert by_id["f-anna-load"].end == QH0
    w = QhWindows(300, expected=expected_from_snapshot(lambda: replace(snap, flows=flows)))
    w.add(reading("f-bruno-pv", QH0, -3))
    w.add(reading("f-bruno-load", QH0, 7))                 # anna's flow ended at QH0: not expected
    assert settle(w) == [QH0]
