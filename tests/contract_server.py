"""A real anbu API server for the OpenAPI contract test (``tests/test_openapi_contract.py``):
``python -m tests.contract_server <database url> <port> <ids file>``.

Migrates the database, seeds a district, an administrator key and a resident with a
check-in (their ids go to the ids file, so the fuzzer reaches past 404s), then serves the
app with uvicorn on 127.0.0.1 until killed. A separate process: the fuzzer's thousands of
requests, and uvicorn's own loop, stay out of the test runner.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import uvicorn

from anbu.app.parts import build_api, build_container
from anbu.db.migrate import upgrade
from anbu.db.models import Resident
from anbu.domain.checkin import CheckinSource
from anbu.services.admin import create_api_key, ensure_district
from anbu.services.checkins import open_checkin
from anbu.settings import Settings

ADMIN_KEY = "contract-admin-key"


async def seed(settings: Settings) -> dict[str, str]:
    container = build_container(settings)
    try:
        await upgrade(container.engine)
        async with container.sessions() as s:
            district = await ensure_district(s, "11620", "관악구")
            await create_api_key(s, "contract", admin=True, key=ADMIN_KEY)
            resident = Resident(
                district_id=district.id,
                district=district,
                name="김안부",
                phone="01099990001",
                dong="신림동",
            )
            s.add(resident)
            await s.flush()
            checkin, _ = await open_checkin(
                s,
                resident,
                source=CheckinSource.API,
                reason="contract test",
                now=container.clock.now(),
            )
            await s.commit()
            return {"resident_id": resident.id, "checkin_id": checkin.id}
    finally:
        await container.aclose()


def main() -> None:
    url, port, ids_file = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
    # The rate limits are tested on their own (test_security_limits): a fuzzer sending
    # thousands of requests from one address must not be answered 429 here.
    unlimited = {
        f"{route}_{kind}": 1_000_000
        for route in ("per_key", "ack", "callback", "other")
        for kind in ("rate", "burst")
    }
    settings = Settings(database_url=url, bootstrap_api_key=None, limits=unlimited)
    ids = asyncio.run(seed(settings))
    ids_file.write_text(json.dumps(ids))
    app = build_api(build_container(settings))
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
