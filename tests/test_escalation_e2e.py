"""Escalation end to end with a REAL Kannel (bearerbox + smsbox + fake SMSC) and a real
database (SQLite and PostgreSQL), anbu's API served over HTTP so Kannel's delivery reports and
the officials' replies reach it exactly as in production.

- A closed unreachable case -> the primary official's SMS arrives at the fake SMSC with exactly
  the right Korean text; its delivery report is recorded; a reply acknowledges; the chain stops.
- No reply -> the backup is messaged when the primary's clock (seconds here) runs out.
- HELP -> an urgent page at once.
- Kannel stopped for a while -> alerts wait in the outbox, all go out once it is back, none twice.
- The outbox worker process SIGKILLed again and again between storing and sending -> after the
  restarts every message reached the SMSC exactly once.
- Kannel unreachable -> failover to Solapi (its local stand-in).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import random
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import uvicorn
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from anbu.app.parts import build_api, build_container
from anbu.container import Container
from anbu.db.models_escalation import IncidentEvent, OutboxMessage
from anbu.domain.calls import CallResult
from anbu.domain.escalation import SEOUL
from anbu.domain.incidents import DeliveryStatus, IncidentEventKind, IncidentStatus, OutboxStatus
from anbu.domain.replies import Reply
from anbu.domain.sms_text import SmsKind
from anbu.ports import SmsSender
from anbu.settings import Settings, SmsSettings
from devstack.kannel import KannelConfig, KannelInstance, KannelPorts, ReceivedSms
from escalation.outbox import OutboxConfig, OutboxWorker, enqueue
from escalation.providers import KannelSmsSender, SolapiSmsSender
from escalation.service import EscalationConfig, EscalationService
from tests.fakes.solapi_server import FakeSolapiServer
from tests.fixtures_asterisk import free_ports
from tests.fixtures_kannel import ADMIN_PASSWORD, SENDSMS_PASSWORD, SENDSMS_USER
from tests.test_escalation_service import (
    OUR_NUMBER,
    close_case,
    incident_of,
    make_world,
    new_phone,
    token_in,
)

pytestmark = pytest.mark.kannel

ROOT = Path(__file__).resolve().parent.parent
TICK_S = 0.1


def make_instance(var_dir: Path, api_port: int, name: str) -> KannelInstance:
    admin, smsbox, smsc, inject, sendsms = free_ports(5)
    return KannelInstance(
        KannelConfig(
            name=name,
            var_dir=var_dir,
            mo_url=f"http://127.0.0.1:{api_port}/v1/sms/kannel/inbound",
            sendsms_user=SENDSMS_USER,
            sendsms_password=SENDSMS_PASSWORD,
            admin_password=ADMIN_PASSWORD,
            number=OUR_NUMBER,
            ports=KannelPorts(
                admin=admin, smsbox=smsbox, smsc=smsc, inject=inject, sendsms=sendsms
            ),
            callback_retry_delay_s=1,
        )
    )


@pytest.fixture(scope="module")
def api_port() -> int:
    # One port for the module: Kannel's get-url (replies) is fixed when it starts.
    return free_ports(1)[0]


@pytest.fixture(scope="module")
def esc_kannel(tmp_path_factory: pytest.TempPathFactory, api_port: int) -> Iterator[KannelInstance]:
    instance = make_instance(tmp_path_factory.mktemp("esc-kannel"), api_port, "esc")
    instance.start_sync()  # raises (never skips) when Kannel cannot run here
    yield instance
    instance.stop_sync(grace_s=2.0)


def kannel_sender(instance: KannelInstance, api_port: int) -> KannelSmsSender:
    return KannelSmsSender(
        sendsms_url=instance.sendsms_url,
        username=SENDSMS_USER,
        password=SENDSMS_PASSWORD,
        dlr_url=f"http://127.0.0.1:{api_port}/v1/sms/kannel/dlr",
        timeout_s=2.0,
    )


@dataclass
class Stack:
    """anbu's escalation side, running: API (uvicorn), outbox worker, the scheduler's tick."""

    container: Container
    service: EscalationService
    worker: OutboxWorker | None
    api_url: str
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    server: uvicorn.Server | None = None

    @property
    def sessions(self) -> async_sessionmaker[AsyncSession]:
        return self.container.sessions


async def _tick_forever(service: EscalationService) -> None:
    while True:
        await service.escalate_due()
        await asyncio.sleep(TICK_S)


StackFactory = Callable[..., Awaitable[Stack]]


def _started(server: uvicorn.Server) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return bool(server.started)

    return check


@pytest.fixture
async def stack_factory(db_url: str, api_port: int) -> AsyncIterator[StackFactory]:
    stacks: list[Stack] = []

    async def make(
        senders: list[SmsSender] | None = None,
        *,
        kannel: KannelInstance | None = None,
        worker: bool = True,
    ) -> Stack:
        settings = Settings(
            database_url=db_url,
            public_url=f"http://127.0.0.1:{api_port}",
            sms=SmsSettings(sender=OUR_NUMBER),
        )
        container = build_container(settings)
        if senders is None:
            assert kannel is not None
            senders = [kannel_sender(kannel, api_port)]
        out_worker = (
            OutboxWorker(
                container.sessions,
                senders,
                config=OutboxConfig(
                    poll_interval_s=0.1, retry_initial_s=0.2, retry_max_s=1.0, failover_after=1
                ),
                clock=container.clock,
            )
            if worker
            else None
        )
        service = EscalationService(
            container.sessions,
            EscalationConfig.from_settings(settings),
            clock=container.clock,
            wake=out_worker.wake if out_worker else None,
        )
        server = uvicorn.Server(
            uvicorn.Config(
                build_api(container, service),
                host="127.0.0.1",
                port=api_port,
                lifespan="off",
                log_level="warning",
            )
        )
        stack = Stack(container, service, out_worker, f"http://127.0.0.1:{api_port}")
        stack.server = server
        stacks.append(stack)
        stack.tasks.append(asyncio.create_task(server.serve(), name="api"))
        await wait_for(_started(server), 10)
        if out_worker is not None:
            stack.tasks.append(asyncio.create_task(out_worker.run(), name="outbox"))
        stack.tasks.append(asyncio.create_task(_tick_forever(service), name="tick"))
        return stack

    yield make
    for stack in stacks:
        if stack.worker is not None:
            stack.worker.stop()
        if stack.server is not None:
            stack.server.should_exit = True
        for task in stack.tasks:
            if task.get_name() == "tick":
                task.cancel()
        for task in stack.tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if stack.worker is not None:
            await stack.worker.aclose()
        await stack.container.aclose()


async def wait_for(check: Callable[[], Awaitable[bool]], timeout_s: float = 15.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError("condition not met in time")
        await asyncio.sleep(0.05)


async def row(sessions: async_sessionmaker[AsyncSession], reference: str) -> OutboxMessage:
    async with sessions() as s:
        return (
            await s.execute(select(OutboxMessage).where(OutboxMessage.reference == reference))
        ).scalar_one()


async def outbox_counts(sessions: async_sessionmaker[AsyncSession]) -> dict[OutboxStatus, int]:
    """How many outbox messages are in each status (a status with none is absent)."""
    async with sessions() as s:
        rows = await s.execute(
            select(OutboxMessage.status, func.count()).group_by(OutboxMessage.status)
        )
    return dict(rows.all())


def local(at: dt.datetime) -> str:
    return at.astimezone(SEOUL).strftime("%m-%d %H:%M:%S")


def now_s() -> dt.datetime:
    # Whole seconds: the attempt times in the text are shown to the second.
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


async def test_given_unreachable_case_when_closed_then_exact_sms_dlr_and_reply_stops_chain(
    stack_factory: StackFactory, esc_kannel: KannelInstance
) -> None:
    stack = await stack_factory(kannel=esc_kannel)
    world = await make_world(stack.sessions, timeouts=(2, 2, 2))
    primary = world.officials["primary"].phone
    t0 = now_s()
    event = await close_case(stack.sessions, world.resident_id, [CallResult.NO_ANSWER] * 3, t0)
    await stack.service.on_checkin_closed(event)  # what the dispatcher does after closing

    sms = await esc_kannel.wait_received(lambda m: m.receiver == primary)
    incident = await incident_of(stack.sessions, event.checkin_id)
    assert sms.sender == OUR_NUMBER
    assert sms.text == (
        f"[안부] 김○○(신림동) 전화 안받음. 회신 {incident.code}\n"
        "대상: 김○○ (관악구 신림동)\n"
        "사유: 전화 기록 52시간 없음\n"
        f"통화: 3회 시도, {local(event.at)} 종료\n"
        f"1) {local(t0)} 받지 않음\n"
        f"2) {local(t0 + dt.timedelta(seconds=30))} 받지 않음\n"
        f"3) {local(t0 + dt.timedelta(seconds=60))} 받지 않음\n"
        f"확인: {incident.code} 회신 또는 {stack.api_url}/ack/{token_in(sms.text)}"
    )
    reference = f"inc{incident.id}.1"

    async def delivered() -> bool:
        return (await row(stack.sessions, reference)).delivery is DeliveryStatus.DELIVERED

    await wait_for(delivered)
    await esc_kannel.inject_reply(primary, f"{incident.code} 확인했습니다")

    async def acknowledged() -> bool:
        inc = await incident_of(stack.sessions, event.checkin_id)
        return inc.status is IncidentStatus.ACKNOWLEDGED

    await wait_for(acknowledged)
    incident = await incident_of(stack.sessions, event.checkin_id)
    assert incident.acknowledged_by == world.officials["primary"].id
    assert incident.ack_channel == "sms"
    # Well past the primary's 2 s clock: nobody else is told.
    await asyncio.sleep(3.0)
    backup = world.officials["backup"].phone
    assert not [m for m in esc_kannel.received() if m.receiver == backup]
    async with stack.sessions() as s:
        kinds = [
            str(k)
            for k in (
                await s.execute(
                    select(IncidentEvent.kind)
                    .where(IncidentEvent.incident_id == incident.id)
                    .order_by(IncidentEvent.at, IncidentEvent.id)
                )
            ).scalars()
        ]
    assert kinds[:3] == ["opened", "queued", "sent"]
    assert kinds[-1] == "acknowledged"
    assert "delivered" in kinds


async def test_given_no_reply_when_primary_clock_runs_out_then_backup_is_messaged(
    stack_factory: StackFactory, esc_kannel: KannelInstance
) -> None:
    stack = await stack_factory(kannel=esc_kannel)
    world = await make_world(stack.sessions, timeouts=(2, 30, 30))
    event = await close_case(stack.sessions, world.resident_id, [CallResult.NO_ANSWER], now_s())
    await stack.service.on_checkin_closed(event)
    backup_sms = await esc_kannel.wait_received(
        lambda m: m.receiver == world.officials["backup"].phone, timeout_s=15
    )
    assert "2차 알림: 앞 담당자가 확인하지 않음" in backup_sms.text
    incident = await incident_of(stack.sessions, event.checkin_id)
    async with stack.sessions() as s:
        log = {
            (e.kind, e.message_id): e.at
            for e in (
                await s.execute(
                    select(IncidentEvent).where(IncidentEvent.incident_id == incident.id)
                )
            ).scalars()
        }
    first = await row(stack.sessions, f"inc{incident.id}.1")
    assert first.sent_at is not None
    escalated_at = next(at for (k, _), at in log.items() if k is IncidentEventKind.ESCALATED)
    # Not a moment before the primary's 2 s were up (counted from the gateway's acceptance).
    assert escalated_at >= first.sent_at + dt.timedelta(seconds=2)
    assert incident.step_position == 2


async def test_given_help_reply_when_case_closes_then_urgent_page_at_once(
    stack_factory: StackFactory, esc_kannel: KannelInstance
) -> None:
    stack = await stack_factory(kannel=esc_kannel)
    world = await make_world(stack.sessions, name="박안부", dong="봉천동")
    event = await close_case(stack.sessions, world.resident_id, [Reply.HELP], now_s())
    await stack.service.on_checkin_closed(event)
    sms = await esc_kannel.wait_received(lambda m: m.receiver == world.officials["primary"].phone)
    incident = await incident_of(stack.sessions, event.checkin_id)
    assert sms.text.splitlines()[0] == f"[안부] 긴급 박○○(봉천동) 도움요청. 회신 {incident.code}"
    assert sms.text.splitlines()[4].endswith("받음, 도움 요청")


async def _enqueue_sms(stack: Stack, count: int, prefix: str, text: str) -> dict[str, str]:
    """``count`` SMS to new numbers straight into the outbox: reference -> number."""
    refs: dict[str, str] = {}
    async with stack.sessions() as s:
        for i in range(count):
            ref = f"{prefix}{os.getpid()}-{i}"
            refs[ref] = new_phone()
            enqueue(
                s,
                reference=ref,
                to=refs[ref],
                sender=OUR_NUMBER,
                text=f"{text} {i}",
                kind=SmsKind.SMS,
                subject=None,
                now=stack.container.clock.now(),
            )
        await s.commit()
    return refs


async def test_given_kannel_stopped_when_alerts_close_then_they_wait_and_go_out_once(
    stack_factory: StackFactory, tmp_path: Path, api_port: int
) -> None:
    kannel = make_instance(tmp_path, api_port, "outage")
    await kannel.start()
    try:
        stack = await stack_factory(kannel=kannel)
        await kannel.stop(grace_s=1.0)
        refs = await _enqueue_sms(stack, 20, "outage", "[안부] 시험")
        assert stack.worker is not None
        stack.worker.wake()

        async def all_retried() -> bool:
            async with stack.sessions() as s:
                rows = (await s.execute(select(OutboxMessage))).scalars().all()
            return all(r.attempts >= 2 and r.status is OutboxStatus.PENDING for r in rows)

        await wait_for(all_retried)
        await kannel.start()

        async def all_sent() -> bool:
            return (await outbox_counts(stack.sessions)).get(OutboxStatus.SENT) == len(refs)

        await wait_for(all_sent, 30)

        def got_all() -> list[ReceivedSms]:
            return [m for m in kannel.received() if m.receiver in refs.values()]

        await kannel.wait_received(lambda _m: len(got_all()) >= len(refs), timeout_s=15)
        await asyncio.sleep(0.5)  # a duplicate would arrive right behind
        received = sorted(m.receiver for m in got_all())
        assert received == sorted(refs.values())
    finally:
        await kannel.stop(grace_s=1.0)


async def test_given_worker_sigkilled_repeatedly_when_restarted_then_each_sms_sent_once(
    stack_factory: StackFactory, esc_kannel: KannelInstance, db_url: str, api_port: int
) -> None:
    stack = await stack_factory(kannel=esc_kannel, worker=False)  # the API only: reports
    n = 60
    refs = await _enqueue_sms(stack, n, "kill", "[안부] 재시작 시험")
    env = {
        **os.environ,
        "ANBU_DATABASE_URL": db_url,
        "ANBU_SMS__SENDER": OUR_NUMBER,
        "ANBU_SMS__KANNEL_URL": esc_kannel.sendsms_url,
        "ANBU_SMS__KANNEL_USER": SENDSMS_USER,
        "ANBU_SMS__KANNEL_PASSWORD": SENDSMS_PASSWORD,
        "ANBU_SMS__KANNEL_DLR_URL": f"http://127.0.0.1:{api_port}/v1/sms/kannel/dlr",
        "ANBU_SMS__TIMEOUT_S": "2",
        "ANBU_ESCALATION__SENDING_LEASE_S": "3",
        "ANBU_ESCALATION__OUTBOX_CONCURRENCY": "2",
        "ANBU_ESCALATION__OUTBOX_POLL_INTERVAL_S": "0.1",
        "PYTHONUNBUFFERED": "1",
    }

    async def start_worker() -> asyncio.subprocess.Process:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "escalation.worker",
            "--log-level",
            "WARNING",
            cwd=str(ROOT),
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 30)
        assert b"outbox worker ready" in line
        return proc

    async def sending_now() -> bool:
        return bool((await outbox_counts(stack.sessions)).get(OutboxStatus.SENDING))

    rng = random.Random(6)
    mid_batch = 0
    for round_no in range(6):
        proc = await start_worker()
        if round_no == 0:
            # The first kill lands the moment a claimed batch is being sent, however loaded
            # the machine is; the later ones at random moments.
            for _ in range(2000):
                if await sending_now():
                    break
                await asyncio.sleep(0.005)
        else:
            await asyncio.sleep(rng.uniform(0.0, 0.3))
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
        counts = await outbox_counts(stack.sessions)
        if counts.get(OutboxStatus.SENDING):
            mid_batch += 1  # killed with a provider call in flight
        if not counts.get(OutboxStatus.PENDING):
            break
    assert mid_batch >= 1, "no kill landed while messages were being sent"
    proc = await start_worker()
    try:

        async def settled() -> bool:
            return (await outbox_counts(stack.sessions)).get(OutboxStatus.SENT) == n

        await wait_for(settled, 40)
    finally:
        proc.send_signal(signal.SIGTERM)
        await proc.wait()
    await asyncio.sleep(1.0)  # a duplicate would arrive right behind
    received = [m.receiver for m in esc_kannel.received() if m.receiver in refs.values()]
    assert sorted(received) == sorted(refs.values()), "each message exactly once"


async def test_given_kannel_unreachable_when_alerting_then_solapi_fallback_delivers(
    stack_factory: StackFactory, solapi_server: FakeSolapiServer
) -> None:
    dead_port = free_ports(1)[0]
    kannel = KannelSmsSender(
        sendsms_url=f"http://127.0.0.1:{dead_port}/cgi-bin/sendsms",
        username=SENDSMS_USER,
        password=SENDSMS_PASSWORD,
        timeout_s=1.0,
    )
    solapi = SolapiSmsSender(
        api_key=solapi_server.api_key,
        api_secret=solapi_server.api_secret,
        base_url=solapi_server.url,
    )
    stack = await stack_factory([kannel, solapi])
    world = await make_world(stack.sessions)
    event = await close_case(stack.sessions, world.resident_id, [Reply.HELP], now_s())
    await stack.service.on_checkin_closed(event)
    incident = await incident_of(stack.sessions, event.checkin_id)
    reference = f"inc{incident.id}.1"

    async def sent() -> bool:
        return (await row(stack.sessions, reference)).status is OutboxStatus.SENT

    await wait_for(sent)
    msg = await row(stack.sessions, reference)
    assert msg.provider == "solapi"
    assert msg.attempts == 2
    [accepted] = solapi_server.accepted
    assert accepted["to"] == world.officials["primary"].phone
    assert accepted["type"] == "LMS"
    assert accepted["subject"] == "[안부] 긴급 도움요청"
    assert accepted["text"] == msg.text
    assert accepted["customFields"] == {"ref": reference}
