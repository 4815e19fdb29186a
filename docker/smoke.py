"""The check `make docker-test` runs against the running stack (stdlib only, runs on the host).

One check-in to 010-9999-0001 (the carrier stand-in answers and presses 1) must end
completed/ok: the call went anbu -> engine container -> trunk -> carrier container and the DTMF
came back over RTP into the IVR. One to 010-9999-0002 (presses 2) must end help and page the
district's official by SMS: the message must reach Kannel's fake SMSC (read from its container
log by the caller, passed on stdin at the end).

    python3 docker/smoke.py API_URL API_KEY    # sets up, runs both calls, prints JSON
    python docker/smoke.py sms < fakesmsc.log  # the SMS the official got (needs anbu importable)
    python3 docker/smoke.py API_URL API_KEY campaign N   # N more check-ins to 010-9999-0001,
                                                         # each must end ok after one attempt
"""

from __future__ import annotations

import json
import sys
import time
import urllib.error
import urllib.request
from typing import Any

OFFICIAL = "010-9999-0190"


def call(base: str, key: str, method: str, path: str, body: object | None = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(
        base + path,
        data=data,
        method=method,
        headers={"X-API-Key": key, "content-type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        reason = exc.read().decode(errors="replace")
        raise SystemExit(f"{method} {path}: {exc.code} {reason}") from None


def wait_closed(base: str, key: str, checkin_id: str, timeout_s: float = 120.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        c = call(base, key, "GET", f"/v1/checkins/{checkin_id}")
        if c["status"] not in ("pending", "dialing"):
            return c
        time.sleep(0.5)
    raise SystemExit(f"check-in {checkin_id} not closed after {timeout_s:.0f} s: {c}")


def main(base: str, key: str) -> int:
    call(base, key, "POST", "/v1/districts", {"code": "11620", "name": "관악구"})
    call(
        base,
        key,
        "POST",
        "/v1/programs",
        {
            "name": "docker-test (any hour)",
            "is_default": True,
            "calling_hours": {
                "start": "00:00",
                "end": "24:00",
                "weekdays": [0, 1, 2, 3, 4, 5, 6],
                "call_on_holidays": True,
            },
        },
    )
    official = call(
        base,
        key,
        "POST",
        "/v1/officials",
        {"district_code": "11620", "name": "담당 주무관", "phone": OFFICIAL},
    )
    call(
        base,
        key,
        "PUT",
        "/v1/escalation-chains",
        {"district_code": "11620", "steps": [{"official_id": official["id"]}]},
    )
    opened = {}
    for label, phone in (("ok", "010-9999-0001"), ("help", "010-9999-0002")):
        resident = call(
            base,
            key,
            "POST",
            "/v1/residents",
            {"district_code": "11620", "name": f"김안부 {label}", "phone": phone},
        )
        checkin = call(
            base,
            key,
            "POST",
            "/v1/checkins",
            {"resident_id": resident["id"], "reason": "docker-test"},
        )
        opened[label] = checkin["id"]
    results = {}
    for label, checkin_id in opened.items():  # both calls run at once
        closed = wait_closed(base, key, checkin_id)
        results[label] = {
            "status": closed["status"],
            "outcome": closed["outcome"],
            "attempts": [(a["result"], a["reply"]) for a in closed["attempts"]],
        }
    print(json.dumps(results, ensure_ascii=False))
    bad = []
    if (results["ok"]["status"], results["ok"]["outcome"]) != ("completed", "ok"):
        bad.append(f"010-9999-0001 should be completed/ok: {results['ok']}")
    if results["help"]["outcome"] != "help":
        bad.append(f"010-9999-0002 should be help: {results['help']}")
    for line in bad:
        print(f"smoke: {line}", file=sys.stderr)
    return 1 if bad else 0


def campaign(base: str, key: str, count: int) -> int:
    """``count`` check-ins at once (two dispatchers race for them): each ends ok, one attempt."""
    ids = []
    for n in range(count):
        resident = call(
            base,
            key,
            "POST",
            "/v1/residents",
            {"district_code": "11620", "name": f"김안부 {n}", "phone": "010-9999-0001"},
        )
        checkin = call(
            base, key, "POST", "/v1/checkins", {"resident_id": resident["id"], "reason": "campaign"}
        )
        ids.append(checkin["id"])
    bad = []
    for checkin_id in ids:
        c = wait_closed(base, key, checkin_id, timeout_s=300.0)
        if (c["status"], c["outcome"], len(c["attempts"])) != ("completed", "ok", 1):
            bad.append(f"{checkin_id}: {c['status']}/{c['outcome']}, {len(c['attempts'])} attempts")
    for line in bad:
        print(f"smoke: {line}", file=sys.stderr)
    print(f"campaign: {count - len(bad)} of {count} check-ins ok after one attempt")
    return 1 if bad else 0


def sms(log: bytes) -> int:
    """Exit 0 when the fake SMSC got a whole message for the official; print its text."""
    from devstack.kannel import parse_fakesmsc_output, reassemble

    wanted = OFFICIAL.replace("-", "")
    got = [m for m in reassemble(parse_fakesmsc_output(log)) if m.receiver.endswith(wanted[1:])]
    for message in got:
        print(f"SMS to {message.receiver}: {message.text!r}")
    return 0 if got else 1


if __name__ == "__main__":
    if sys.argv[1:] == ["sms"]:
        raise SystemExit(sms(sys.stdin.buffer.read()))
    if sys.argv[3:4] == ["campaign"]:
        raise SystemExit(campaign(sys.argv[1], sys.argv[2], int(sys.argv[4])))
    raise SystemExit(main(sys.argv[1], sys.argv[2]))
