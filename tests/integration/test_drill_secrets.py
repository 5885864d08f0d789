"""No secret in anything a drill leaves behind (issue 14): a full drill (every stage through
the real flow to the emulators, in a process of its own as ``crisiscomms drill`` runs) runs
with every secret it uses pinned to a known value; then its console output,
every log record at DEBUG, every file it wrote (database, status page, support statements, the
emulators' records) and Prefect's own home (its database holds the flow runs' logs) are
searched for each value, as text and as bytes."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from repo_paths import PROJECT_ROOT

pytestmark = [pytest.mark.integration]


def _secret(prefix: str) -> str:
    return f"{prefix}{secrets.token_hex(12)}"


def _files(*roots: Path) -> Iterator[Path]:
    for root in roots:
        if root.is_dir():
            yield from (path for path in root.rglob("*") if path.is_file())


DRILL = """
import json, logging, sys
from pathlib import Path
from crisiscomms.cli import common
from crisiscomms.core.settings import Settings
from crisiscomms.testing.drill import run_drill
from crisiscomms.testing.emulators import start_emulators
handler = logging.StreamHandler(sys.stderr)
handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
logging.getLogger().addHandler(handler)
for name in ("crisiscomms", "httpx", "httpcore", "urllib3", "python_http_client", "tweepy",
             "sendgrid", "twilio", "uvicorn", "fastapi", "starlette", "prefect"):
    logging.getLogger(name).setLevel(logging.DEBUG)
pinned = json.loads(sys.stdin.readline())
data, out = Path(sys.argv[1]), Path(sys.argv[2])
sg, x = pinned["CRISISCOMMS_SENDGRID_API_KEY"], pinned["CRISISCOMMS_X_BEARER_TOKEN"]
with start_emulators(sendgrid_key=sg, x_token=x) as pair:
    report = run_drill(playbook_name="outage", recipients=30, publish=common.publish,
                       base=Settings(_env_file=None, data_dir=data), data_dir=data, out=out,
                       emulators=(pair, sg, x), reactions=120, listen_app=common.listen_app,
                       environment_overrides=pinned)
    report["sendgrid_recipients"] = pair.sendgrid.stats()["recipients"]
print("REPORT " + json.dumps(report, default=str))
"""
"""The drill in a process of its own, as ``crisiscomms drill`` runs: every log record at DEBUG
goes to its stderr; the secrets reach it on stdin (never on its command line)."""


def test_a_drill_writes_no_secret_anywhere(tmp_path: Path) -> None:
    pinned = {
        "CRISISCOMMS_SENDGRID_API_KEY": _secret("SG.pinned-"),
        "CRISISCOMMS_X_BEARER_TOKEN": _secret("xtok-pinned-"),
        "CRISISCOMMS_INBOUND_PARSE_PASSWORD": _secret("parse-pinned-"),
        "CRISISCOMMS_ZENDESK_WEBHOOK_SECRET": _secret("zendesk-pinned-"),
        "CRISISCOMMS_FRESHDESK_WEBHOOK_SECRET": _secret("freshdesk-pinned-"),
        "CRISISCOMMS_CSAT_SECRET": _secret("csat-pinned-"),
    }
    data, out = tmp_path / "data", tmp_path / "out"
    prefect_home = tmp_path / "prefect"
    # as a person runs it: no settings of ours, Prefect's own temporary server in its own home
    env = {**{k: v for k, v in os.environ.items()
              if not k.startswith(("CRISISCOMMS_", "PREFECT_"))},
           "PREFECT_HOME": str(prefect_home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    ran = subprocess.run([sys.executable, "-c", DRILL, str(data), str(out)], env=env,
                         input=json.dumps(pinned) + "\n", capture_output=True, text=True,
                         cwd=PROJECT_ROOT, timeout=900, check=False)
    assert ran.returncode == 0, ran.stderr[-3000:]
    report = json.loads(next(line for line in ran.stdout.splitlines()
                             if line.startswith("REPORT "))[len("REPORT "):])
    stats = {"recipients": report["sendgrid_recipients"]}
    # the secrets were really used: the sends authenticated, the receivers verified the crowd
    assert stats["recipients"] > 0 and report["duplicates"] == 0
    assert all(c["failed"] == 0 for c in report["channels"].values())
    # the receivers' secrets were used too: the crowd's posts were verified and stored
    by_source = report["reactions"]["by_source"]
    assert {"x", "email_reply", "ticket"} <= set(by_source)
    assert report["reactions"]["played"] == 120

    assert " DEBUG " in ran.stderr  # the log records were there to search
    texts = {"stdout": ran.stdout, "stderr (every log record at DEBUG)": ran.stderr}
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
