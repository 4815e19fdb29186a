"""Pacing as tables: global cap, per-trunk caps, calls per second. Time passed in."""

from __future__ import annotations

import pytest

from anbu.domain.pacing import Pacer, fair_share, refill_allowance


def test_given_cap_when_calls_start_then_available_drops_to_zero_and_recovers() -> None:
    pacer = Pacer(max_concurrent=2)
    assert pacer.available(0.0) == 2
    pacer.started("a", 0.0)
    pacer.started("a", 0.0)
    assert (pacer.available(0.0), pacer.active) == (0, 2)
    pacer.finished("a")
    assert pacer.available(0.0) == 1


def test_given_trunk_cap_when_trunk_full_then_other_trunks_still_start() -> None:
    pacer = Pacer(max_concurrent=10, trunk_caps={"kt": 1})
    pacer.started("kt", 0.0)
    assert not pacer.trunk_free("kt")
    assert pacer.trunk_free("skt")  # no cap configured
    pacer.finished("kt")
    assert pacer.trunk_free("kt")


@pytest.mark.parametrize(
    ("cps", "burst", "started_at_0", "t", "expected"),
    [
        (2.0, 1, 1, 0.0, 0),  # bucket of one, used
        (2.0, 1, 1, 0.25, 0),  # half a token back
        (2.0, 1, 1, 0.5, 1),  # one token back after 1/cps
        (2.0, 4, 4, 1.0, 2),  # two tokens back after a second
        (2.0, 4, 0, 10.0, 4),  # never more than the burst
    ],
)
def test_given_rate_limit_when_time_passes_then_tokens_refill(
    cps: float, burst: int, started_at_0: int, t: float, expected: int
) -> None:
    pacer = Pacer(max_concurrent=50, calls_per_second=cps, burst=burst)
    pacer.available(0.0)
    for _ in range(started_at_0):
        pacer.started("trunk", 0.0)
        pacer.finished("trunk")
    assert pacer.available(t) == expected


def test_given_empty_bucket_when_asking_next_token_then_one_over_rate() -> None:
    pacer = Pacer(max_concurrent=5, calls_per_second=4.0, burst=1)
    pacer.started("trunk", 0.0)
    assert pacer.next_token_in(0.0) == pytest.approx(0.25)
    assert pacer.next_token_in(0.25) == 0.0
    assert Pacer(max_concurrent=5).next_token_in(0.0) == 0.0


@pytest.mark.parametrize(
    "kwargs", [{"max_concurrent": 0}, {"max_concurrent": 1, "calls_per_second": 0}]
)
def test_given_nonsense_when_built_then_it_refuses(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="must be"):
        Pacer(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("cap", "workers", "own_calls", "expected"),
    [
        (50, 1, 0, 50),  # alone: every channel it frees is refilled at once
        (50, 1, 49, 1),
        (10, 2, 0, 5),  # two workers: up to its half
        (10, 2, 5, 0),  # at its share: freed channels go back through the table
        (10, 2, 9, 0),  # above its share (it filled the cap first): never negative
        (10, 3, 0, 4),  # shares round up
        (10, 0, 0, 10),  # not yet seen itself in the table: counts as alone
    ],
)
def test_given_workers_when_calls_hang_up_then_refill_stays_within_the_share(
    cap: int, workers: int, own_calls: int, expected: int
) -> None:
    assert refill_allowance(cap, workers, own_calls) == expected


@pytest.mark.parametrize(
    ("cap", "workers", "expected"),
    [(10, 1, 10), (10, 2, 5), (10, 3, 4), (1, 2, 1), (10, 0, 10)],
)
def test_given_live_workers_when_claiming_then_each_holds_at_most_its_share(
    cap: int, workers: int, expected: int
) -> None:
    # Every claim pass, not only a hang-up's refill: the worker that stores a result wakes
    # first, and without the bound took every freed channel before another worker polled.
    assert fair_share(cap, workers) == expected


def test_given_a_transfer_leg_when_counted_then_it_takes_a_global_slot_and_a_node_slot() -> None:
    # The global cap (3) is below the node's (10): only the global cap can stop the next call.
    pacer = Pacer(max_concurrent=3, node_caps={"a": 10, "b": 10})
    pacer.started("trunk", 0.0, "a")
    pacer.leg_started("a")  # the resident asked for a person: a second channel on node a
    assert (pacer.active, pacer.legs, pacer.node_active("a")) == (2, 1, 2)
    assert pacer.available(0.0) == 1
    pacer.started("trunk", 0.0, "b")
    assert pacer.available(0.0) == 0  # 2 calls + 1 leg = the global cap, nodes have room
    # the node's free channels steer the choice: a has the leg too
    pacer.finished("trunk", "b")
    pacer.started("trunk", 0.0, pacer.choose_node())
    assert pacer.node_active("b") == 1
    pacer.leg_finished("a")
    assert (pacer.legs, pacer.node_active("a"), pacer.available(0.0)) == (0, 1, 1)
