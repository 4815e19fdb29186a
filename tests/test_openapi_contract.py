"""The OpenAPI document tells the truth: schemathesis (examples, coverage, fuzzing, stateful)
against a real local server. 0 server errors, 0 responses that contradict the document, 0
undocumented status codes, 0 invalid requests accepted (``0``/``false`` coerced), and every
resource a request created is there when read back.

Bounded: ``ANBU_CONTRACT_EXAMPLES`` examples per operation (default 8: about a minute and a
half on 2 cores) and a fixed seed (``ANBU_CONTRACT_SEED``), so a run is repeatable. SQLite by
default; ``ANBU_CONTRACT_DATABASE_URL`` points it at an empty PostgreSQL database instead.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from tests.contract_server import ADMIN_KEY
from tests.fixtures_asterisk import free_ports

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = os.environ.get("ANBU_CONTRACT_EXAMPLES", "8")
# SQLite by default (fast); set a PostgreSQL URL of an empty database to fuzz that backend.
DATABASE_URL = os.environ.get("ANBU_CONTRACT_DATABASE_URL")
SEED = os.environ.get("ANBU_CONTRACT_SEED", "20261202")
CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_headers_conformance",
        "response_schema_conformance",
        "negative_data_rejection",
        "ensure_resource_availability",
        "use_after_free",
        "missing_required_header",
        "unsupported_method",
        "allow_header_conformance",
        "ignored_auth",
    ]
)


def _schemathesis() -> str:
    return str(Path(sys.executable).with_name("schemathesis"))


def test_given_the_api_when_schemathesis_fuzzes_it_then_it_keeps_to_its_document(
    tmp_path: Path,
) -> None:
    (port,) = free_ports(1)
    ids_file = tmp_path / "ids.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    server_log = tmp_path / "server.log"
    log_file = server_log.open("wb")
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.contract_server",
            DATABASE_URL or f"sqlite+aiosqlite:///{tmp_path / 'contract.db'}",
            str(port),
            str(ids_file),
        ],
        cwd=ROOT,
        env=env,
        stdout=log_file,
        stderr=subprocess.STDOUT,
    )
    try:
        config = tmp_path / "schemathesis.toml"
        run = [
            _schemathesis(),
            "--config-file",
            str(config),
            "run",
            f"http://127.0.0.1:{port}/openapi.json",
            "--wait-for-schema",
            "60",
            "-H",
            f"X-API-Key: {ADMIN_KEY}",
            "--checks",
            CHECKS,
            "--max-examples",
            EXAMPLES,
            "--seed",
            SEED,
            "--workers",
            "1",
            "--no-shrink",
            "--report",
            "json",
            "--report-dir",
            str(tmp_path / "report"),
        ]
        for _ in range(600):  # the server writes the ids once the database is seeded
            if ids_file.exists() or server.poll() is not None:
                break
            time.sleep(0.1)
        assert ids_file.exists(), "the contract server did not start"
        ids = json.loads(ids_file.read_text())
        config.write_text(
            "[parameters]\n"
            f'"path.resident_id" = "{ids["resident_id"]}"\n'
            f'"path.checkin_id" = "{ids["checkin_id"]}"\n'
            '"query.district_code" = "11620"\n'
        )
        result = subprocess.run(
            run, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
        )
    finally:
        server.terminate()
        server.wait(timeout=30)
        log_file.close()
    report = json.loads(next((tmp_path / "report").glob("*.json")).read_text())
    summary = [
        f"{f['code']} {f['title']}: {f['count']} in {f['operations']}" for f in report["failures"]
    ]
    server_tail = server_log.read_text(errors="replace")[-3000:]
    assert result.returncode == 0, (
        "\n".join(summary) + "\n" + result.stdout[-6000:] + "\nserver:\n" + server_tail
    )
    assert report["failures"] == []
    assert not report["errors"], report["errors"]
    # The run reached the API: every operation tested, thousands of requests.
    assert report["operations"]["tested"] == report["operations"]["selected"] >= 50
    assert report["test_cases"]["generated"] >= 1000, report["test_cases"]
