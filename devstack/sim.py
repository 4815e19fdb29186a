"""Signal simulator: realistic event streams for N residents living one of a few life stories.

Stories: ``normal`` life, ``decline`` (activity fades from the turning point on), ``sudden_stop``
(the person stops at the turning point while the plug keeps reporting standby power: a quiet
person, not a dead device), ``unplugged`` (the plug goes dark at the turning point while the
person keeps phoning: a dead device, not a quiet person), ``travel`` (away for a few days
from the turning point, with a hold, then back) and ``away`` (out for a few days without telling
anyone: the phone and the step-count app go along, the home goes quiet; a person who is fine,
so a call about them is a false alarm).

Each resident phones (carrier call records, source ``sim-cdr``), and, depending on the tier,
carries a step-count app (``sim-app``) and has a TV on a smart plug with a light sensor
(``sim-plug``). Output events are dicts in the ``POST /v1/signals`` item format. Deterministic
for a seed. ``anbu sim signals`` writes JSON lines or posts batches to a running API.
"""

from __future__ import annotations

import argparse
import datetime as dt
import enum
import json
import math
import random
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from anbu.domain.risk import KST, Tier

START = dt.datetime(2026, 10, 1, tzinfo=KST).astimezone(dt.UTC)


class Story(enum.StrEnum):
    NORMAL = "normal"
    DECLINE = "decline"
    SUDDEN_STOP = "sudden_stop"
    UNPLUGGED = "unplugged"
    TRAVEL = "travel"
    AWAY = "away"


@dataclass(frozen=True, slots=True)
class SimResident:
    resident_id: str
    story: Story = Story.NORMAL
    tier: Tier = Tier.IOT
    calls_per_day: float = 4.0
    plug_id: str | None = None
    app_id: str | None = None
    plug_interval_s: int = 1800
    travel_days: float = 4.0


def _awake(hour: int) -> bool:
    return 7 <= hour < 23


def _day_weight(hour: int) -> float:
    # Calls cluster in the morning and early evening.
    if 9 <= hour < 12 or 17 <= hour < 21:
        return 2.0
    return 1.0 if _awake(hour) else 0.0


_WEIGHT_SUM = sum(_day_weight(h) for h in range(24))


def _factor(r: SimResident, at: dt.datetime, turn: dt.datetime, end: dt.datetime) -> float:
    """How much of their usual life the person lives at ``at`` (1 = normal, 0 = nothing)."""
    if at < turn:
        return 1.0
    if r.story is Story.DECLINE:
        span = max((end - turn).total_seconds(), 1.0)
        return max(0.05, 1.0 - 0.95 * (at - turn).total_seconds() / span)
    if r.story is Story.SUDDEN_STOP:
        return 0.0
    if r.story is Story.TRAVEL:
        return 0.0 if at < turn + dt.timedelta(days=r.travel_days) else 1.0
    return 1.0


def _home(r: SimResident, at: dt.datetime, turn: dt.datetime, f: float) -> float:
    """How much of their life happens at home (the plug sees only that)."""
    if r.story is Story.AWAY and turn <= at < turn + dt.timedelta(days=r.travel_days):
        return 0.0
    return f


def simulate(
    r: SimResident,
    *,
    start: dt.datetime = START,
    end: dt.datetime,
    turn: dt.datetime | None = None,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Every event of ``r`` in ``[start, end)``; the story turns at ``turn`` (default: 3/4)."""
    turn = turn or start + (end - start) * 3 / 4
    rng = random.Random(f"{seed}:{r.resident_id}")
    out: list[dict[str, Any]] = []
    t = start
    n = 0
    while t < end:
        hour = t.astimezone(KST).hour
        f = _factor(r, t, turn, end)
        # Calls: Poisson-ish per hour, scaled by the story.
        lam = r.calls_per_day * _day_weight(hour) / _WEIGHT_SUM * f
        for _ in range(_poisson(rng, lam)):
            n += 1
            at = t + dt.timedelta(seconds=rng.randrange(3600))
            direction = "out" if rng.random() < 0.5 else "in"
            missed = direction == "in" and rng.random() < 0.2
            out.append(
                {
                    "source": "sim-cdr",
                    "event_id": f"{r.resident_id}-c{n}",
                    "kind": "call",
                    "resident_id": r.resident_id,
                    "at": at.isoformat(),
                    "direction": direction,
                    "duration_s": 0 if missed else rng.randrange(20, 600),
                }
            )
        # A stranger's call still rings during a stop: unanswered incoming calls.
        if f == 0 and rng.random() < 0.03:
            n += 1
            out.append(
                {
                    "source": "sim-cdr",
                    "event_id": f"{r.resident_id}-c{n}",
                    "kind": "call",
                    "resident_id": r.resident_id,
                    "at": (t + dt.timedelta(minutes=30)).isoformat(),
                    "direction": "in",
                    "duration_s": 0,
                }
            )
        if r.app_id and r.tier in (Tier.APP, Tier.IOT) and not _dead(r, t, turn):
            steps = int(rng.gauss(350, 80) * f) if _awake(hour) else 0
            out.append(
                {
                    "source": "sim-app",
                    "event_id": f"{r.app_id}-s{epoch_key(t)}",
                    "kind": "steps",
                    "device_id": r.app_id,
                    "at": (t + dt.timedelta(minutes=59)).isoformat(),
                    "value": max(steps, 0),
                }
            )
        if r.plug_id and r.tier is Tier.IOT:
            f = _home(r, t, turn, f)
            step = dt.timedelta(seconds=r.plug_interval_s)
            s = t
            while s < t + dt.timedelta(hours=1):
                if r.story is Story.UNPLUGGED and s >= turn:
                    break
                tv = (hour in (8, 9, 12) or 19 <= hour < 23) and rng.random() < 0.85 * f
                watts = rng.gauss(85, 5) if tv else rng.uniform(0.8, 1.6)
                lamp = (hour in (7, 8) or 18 <= hour < 23) and rng.random() < 0.9 * f
                light = 250 + rng.gauss(0, 5) if lamp else _daylight(s) + rng.gauss(0, 2)
                key = epoch_key(s)
                out.append(
                    {
                        "source": "sim-plug",
                        "event_id": f"{r.plug_id}-p{key}",
                        "kind": "power",
                        "device_id": r.plug_id,
                        "at": s.isoformat(),
                        "value": round(max(watts, 0.0), 1),
                        "interval_s": r.plug_interval_s,
                    }
                )
                out.append(
                    {
                        "source": "sim-plug",
                        "event_id": f"{r.plug_id}-l{key}",
                        "kind": "light",
                        "device_id": r.plug_id,
                        "at": s.isoformat(),
                        "value": round(max(light, 0.0), 1),
                    }
                )
                s += step
        t += dt.timedelta(hours=1)
    out.sort(key=lambda e: e["at"])
    return out


def _daylight(at: dt.datetime) -> float:
    # Daylight through the window rises and falls slowly: no step a light sensor calls a switch.
    local = at.astimezone(KST)
    h = local.hour + local.minute / 60
    return 4.0 + (120.0 * math.sin(math.pi * (h - 6) / 12) if 6 <= h <= 18 else 0.0)


def _dead(r: SimResident, t: dt.datetime, turn: dt.datetime) -> bool:
    # Travelling people carry their phone, so the app keeps reporting (few steps at home... or
    # many abroad; we keep it simple: the app stays silent while away).
    return r.story is Story.TRAVEL and turn <= t < turn + dt.timedelta(days=r.travel_days)


def epoch_key(t: dt.datetime) -> int:
    return int(t.timestamp())


def _poisson(rng: random.Random, lam: float) -> int:
    if lam <= 0:
        return 0
    # Knuth: fine for the small rates of one hour of one person.
    limit, k, p = pow(2.718281828459045, -lam), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


def population(n: int, *, prefix: str = "sim", seed: int = 0) -> list[SimResident]:
    """N residents with a realistic mix of stories (mostly normal) and tiers."""
    rng = random.Random(seed)
    stories = [Story.NORMAL] * 16 + [
        Story.DECLINE,
        Story.SUDDEN_STOP,
        Story.UNPLUGGED,
        Story.TRAVEL,
    ]
    out = []
    for i in range(n):
        tier = rng.choice([Tier.CALLS, Tier.APP, Tier.IOT, Tier.IOT])
        out.append(
            SimResident(
                resident_id=f"{prefix}{i:07d}",
                story=rng.choice(stories),
                tier=tier,
                calls_per_day=rng.uniform(2, 8),
                plug_id=f"{prefix}-plug-{i:07d}" if tier is Tier.IOT else None,
                app_id=f"{prefix}-app-{i:07d}" if tier in (Tier.APP, Tier.IOT) else None,
            )
        )
    return out


def stream(
    residents: Sequence[SimResident], *, start: dt.datetime, end: dt.datetime, seed: int = 0
) -> Iterator[dict[str, Any]]:
    for r in residents:
        yield from simulate(r, start=start, end=end, seed=seed)


def sim_main(argv: Sequence[str] | None = None) -> int:
    """``anbu sim signals``: write JSON lines, or post batches to a running API."""
    ap = argparse.ArgumentParser(prog="anbu sim signals", description=__doc__.splitlines()[0])
    ap.add_argument("--residents", type=int, default=10)
    ap.add_argument("--days", type=float, default=14)
    ap.add_argument("--start", type=dt.datetime.fromisoformat, default=START)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--story", choices=[s.value for s in Story], help="one story for everyone")
    ap.add_argument("--prefix", default="sim")
    ap.add_argument("--post", metavar="URL", help="API base URL, e.g. http://127.0.0.1:8080")
    ap.add_argument("--api-key", default="dev-key")
    ap.add_argument("--district", help="district code: create residents/devices/profiles there")
    ap.add_argument("--batch", type=int, default=5000)
    args = ap.parse_args(argv)
    start: dt.datetime = args.start if args.start.tzinfo else args.start.replace(tzinfo=KST)
    end = start + dt.timedelta(days=args.days)
    people = population(args.residents, prefix=args.prefix, seed=args.seed)
    if args.story:
        people = [
            SimResident(p.resident_id, Story(args.story), p.tier, p.calls_per_day, p.plug_id,
                        p.app_id)
            for p in people
        ]  # fmt: skip
    if not args.post:
        for e in stream(people, start=start, end=end, seed=args.seed):
            sys.stdout.write(json.dumps(e, ensure_ascii=False) + "\n")
        return 0
    return _post(args, people, start, end)


def _post(
    args: argparse.Namespace, people: list[SimResident], start: dt.datetime, end: dt.datetime
) -> int:
    import httpx

    try:
        totals = _post_all(args, people, start, end)
    except httpx.HTTPStatusError as exc:
        try:
            reason = exc.response.json().get("detail", exc.response.text)
        except ValueError:
            reason = exc.response.text
        print(
            f"anbu sim signals: {exc.request.method} {exc.request.url.path} was refused"
            f" ({exc.response.status_code}): {reason}",
            file=sys.stderr,
        )
        return 2
    except httpx.HTTPError as exc:
        print(f"anbu sim signals: cannot reach {args.post}: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(totals))
    return 0


def _post_all(
    args: argparse.Namespace, people: list[SimResident], start: dt.datetime, end: dt.datetime
) -> dict[str, int]:
    import httpx

    headers = {"X-API-Key": args.api_key}
    with httpx.Client(base_url=args.post, headers=headers, timeout=120) as client:
        ids: dict[str, str] = {}
        if args.district:
            for p in people:
                res = client.post(
                    "/v1/residents",
                    json={
                        "district_code": args.district,
                        "name": f"모의 {p.resident_id}",
                        "phone": "01099990001",
                        "external_ref": p.resident_id,
                    },
                )
                res.raise_for_status()
                rid = res.json()["id"]
                ids[p.resident_id] = rid
                client.put(
                    f"/v1/residents/{rid}/monitoring",
                    json={
                        "tier": p.tier.value,
                        "risk_category": "medium",
                        "consent_call_records": True,
                        "consent_app": True,
                        "consent_iot": True,
                    },
                ).raise_for_status()
                for did, kind, interval in (
                    (p.plug_id, "plug", p.plug_interval_s),
                    (p.app_id, "app", 3600),
                ):
                    if did:
                        client.post(
                            "/v1/devices",
                            json={
                                "device_id": did,
                                "resident_id": rid,
                                "kind": kind,
                                "expected_interval_s": interval,
                            },
                        ).raise_for_status()
        batch: list[dict[str, Any]] = []
        totals = {"accepted": 0, "duplicates": 0, "rejected": 0}

        def flush() -> None:
            res = client.post("/v1/signals", json={"events": batch})
            res.raise_for_status()
            body = res.json()
            for k in totals:
                totals[k] += body[k]
            batch.clear()

        for e in stream(people, start=start, end=end, seed=args.seed):
            if e.get("resident_id") in ids:
                e["resident_id"] = ids[e["resident_id"]]
            batch.append(e)
            if len(batch) >= args.batch:
                flush()
        if batch:
            flush()
    return totals


if __name__ == "__main__":
    raise SystemExit(sim_main())
