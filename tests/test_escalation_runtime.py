"""The composition ``anbu serve`` uses: ``anbu.app.parts.build_escalation`` from settings starts
the outbox worker, the listener alerts, the tick runs, ``aclose`` stops it all. The provider
here is the generic webhook against a local recording server (Kannel is covered by the e2e
tests)."""

from __future__ import annotations

import pytest

from anbu.app.parts import build_container, build_escalation
from anbu.domain.calls import CallResult
from anbu.settings import Settings, SmsSettings
from tests.fixtures_kannel import RecordingServer
from tests.test_escalation_service import T0, close_case, incident_of, make_world


async def test_given_settings_when_building_escalation_then_listener_alert_reaches_provider(
    db_url: str, callback_server: RecordingServer
) -> None:
    settings = Settings(
        database_url=db_url,
        sms=SmsSettings(provider="webhook", webhook_url=callback_server.url + "/sms-relay"),
    )
    container = build_container(settings)
    escalation = build_escalation(container, send=True)
    runtime = escalation.runtime
    assert runtime is not None
    runtime.start()
    try:
        assert runtime.service is escalation.service
        world = await make_world(container.sessions)
        event = await close_case(container.sessions, world.resident_id, [CallResult.BUSY], T0)
        await runtime.on_checkin_closed(event)
        incident = await incident_of(container.sessions, event.checkin_id)
        reference = f"inc{incident.id}.1"
        [hit] = await callback_server.wait_for(
            "/sms-relay", lambda h: h.headers.get("Idempotency-Key") == reference
        )
        assert world.officials["primary"].phone.encode() in hit.body
        assert await runtime.tick() == 0
    finally:
        await runtime.aclose()
        await container.aclose()


def test_given_lease_not_above_timeout_when_building_outbox_then_refused() -> None:
    from anbu.errors import ValidationError
    from anbu.settings import EscalationSettings
    from escalation.outbox import OutboxConfig

    settings = Settings(
        sms=SmsSettings(timeout_s=10), escalation=EscalationSettings(sending_lease_s=10)
    )
    with pytest.raises(ValidationError, match="SENDING_LEASE_S"):
        OutboxConfig.from_settings(settings)
