"""The detection benchmark's feedback run compares like with like (pure: no database)."""

from __future__ import annotations

import datetime as dt

from bench.detection import PHASE, _people, _six_weeks
from devstack.sim import simulate
from tests.risk_support import START


def test_given_the_feedback_run_then_weeks_4_to_6_are_the_plain_runs_events_moved_on() -> None:
    people, turns = _people(12, seed=7)
    for p in people:
        six = _six_weeks(p, turns[p.resident_id], seed=7)
        plain = simulate(p, start=START, end=START + PHASE, turn=turns[p.resident_id], seed=7)
        later = [e for e in six if dt.datetime.fromisoformat(e["at"]) >= START + PHASE]
        assert [(e["kind"], e.get("value"), e.get("direction")) for e in later] == [
            (e["kind"], e.get("value"), e.get("direction")) for e in plain
        ]
        assert [dt.datetime.fromisoformat(e["at"]) for e in later] == [
            dt.datetime.fromisoformat(e["at"]) + PHASE for e in plain
        ]
        ids = [(e["source"], e["event_id"]) for e in six]
        assert len(ids) == len(set(ids)), "a replayed event must not be a duplicate"


def test_given_the_feedback_run_then_weeks_1_to_3_are_another_draw_of_normal_life() -> None:
    people, turns = _people(12, seed=7)
    differs = 0
    for p in people:
        six = _six_weeks(p, turns[p.resident_id], seed=7)
        earlier = [e for e in six if dt.datetime.fromisoformat(e["at"]) < START + PHASE]
        plain = simulate(p, start=START, end=START + PHASE, turn=turns[p.resident_id], seed=7)
        calls = [e["at"] for e in earlier if e["kind"] == "call"]
        differs += calls != [e["at"] for e in plain if e["kind"] == "call"]
        # nobody's story turns before week 6: the calls go on at the usual rate to the end
        assert any(
            dt.datetime.fromisoformat(at) >= START + PHASE - dt.timedelta(days=2) for at in calls
        )
    assert differs == len(people)
