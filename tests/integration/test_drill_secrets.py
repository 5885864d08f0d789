"""No secret in anything a drill leaves behind (issue 14): a full drill with a reacting crowd
(every stage through the real flow to the emulators, every receiver through the listening app
under uvicorn) runs with every secret it uses pinned to a known value; then its console output,
every log record at DEBUG, every file it wrote (database, status page, support statements, the
emulators' records) and Prefect's own home (its database holds the flow runs' logs) are
searched for each value, as text and as bytes."""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from crisiscomms.cli import common
from crisiscomms.core.settings import Settings
from crisiscomms.testing.drill import run_drill
from crisiscomms.testing.emulators import start_emulators

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("prefect_server")]


def _secret(prefix: str) -> str:
    return f"{prefix}{secrets.token_hex(12)}"


def _files(*roots: Path) -> Iterator[Path]:
    for root in roots:
        if root.is_dir():
            yield from (path for path in root.rglob("*") if path.is_file())


def test_a_drill_writes_no_secret_anywhere(tmp_path: Path, capfd: pytest.CaptureFixture[str],
                                           caplog: pytest.LogCaptureFixture) -> None:
    pinned = {
        "CRISISCOMMS_SENDGRID_API_KEY": _secret("SG.pinned-"),
        "CRISISCOMMS_X_BEARER_TOKEN": _secret("xtok-pinned-"),
        "CRISISCOMMS_INBOUND_PARSE_PASSWORD": _secret("parse-pinned-"),
        "CRISISCOMMS_ZENDESK_WEBHOOK_SECRET": _secret("zendesk-pinned-"),
        "CRISISCOMMS_FRESHDESK_WEBHOOK_SECRET": _secret("freshdesk-pinned-"),
        "CRISISCOMMS_CSAT_SECRET": _secret("csat-pinned-"),
    }
    caplog.set_level(logging.DEBUG)
    data, out = tmp_path / "data", tmp_path / "out"
    base = Settings(_env_file=None, data_dir=data)  # type: ignore[call-arg]
    with start_emulators(sendgrid_key=pinned["CRISISCOMMS_SENDGRID_API_KEY"],
                         x_token=pinned["CRISISCOMMS_X_BEARER_TOKEN"]) as pair:
        report = run_drill(playbook_name="outage", recipients=30, publish=common.publish,
                           base=base, data_dir=data, out=out,
                           emulators=(pair, pinned["CRISISCOMMS_SENDGRID_API_KEY"],
                                      pinned["CRISISCOMMS_X_BEARER_TOKEN"]),
                           reactions=200, listen_app=common.listen_app,
                           environment_overrides=pinned)
        stats = pair.sendgrid.stats()
    # the secrets were really used: the sends authenticated, the receivers verified the crowd
    assert stats["recipients"] > 0 and report["duplicates"] == 0
    assert all(c["failed"] == 0 for c in report["channels"].values())
    assert report["reactions"]["errors"] == []
    assert report["reactions"]["by_source"]["ticket"]["stored"] > 0
    assert report["reactions"]["by_source"]["csat"]["stored"] > 0

    console = capfd.readouterr()
    texts = {"stdout": console.out, "stderr": console.err,
             "logs": "\n".join(f"{r.name} {r.getMessage()} {r.exc_text or ''}"
                               for r in caplog.records)}
    prefect_home = Path(os.environ.get("PREFECT_HOME", tmp_path / "none"))
    files = list(_files(data, out, prefect_home))
    assert any(p.suffix == ".db" for p in files) and any(p.name == "index.html" for p in files)
    # the search sees what the drill wrote: its incident reference, in the database's bytes
    # (the .db file or its write-ahead log)
    seen = report["incident_id"].encode()
    assert any(p.name.startswith("crisiscomms.db") and seen in p.read_bytes() for p in files)
    assert any(p.is_relative_to(out) for p in files)
    leaks = []
    for name, value in pinned.items():
        leaks += [f"{name} in {where}" for where, text in texts.items() if value in text]
        needle = value.encode()
        leaks += [f"{name} in {path}" for path in files if needle in path.read_bytes()]
    assert leaks == []
