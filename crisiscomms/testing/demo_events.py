"""The demo's event in: a Prometheus Alertmanager alert, posted to the intake API with a demo
source's token, starts the outage playbook's acknowledgement with nobody at the keyboard.

``crisiscomms demo`` calls :func:`post_demo_alert` after its drill: the intake API
(``api/intake.py``) served on loopback by uvicorn in a thread of the demo's process, its outbox
dispatched in the same process (``intake_dispatch=inline``: the demo has no worker), one
firing alert group posted, and the time until the ledger holds the acknowledgement sent on every
channel. The source ``demo-alertmanager`` is added to the demo's sources file (rotated on the
next demo); its token goes to a file readable by its owner only, never to the screen.
"""

from __future__ import annotations

import copy
import threading
import time
import uuid
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from crisiscomms.core.errors import CrisisCommsError

SOURCE = "demo-alertmanager"
ALERT_LABELS = {"alertname": "HighErrorRate", "service": "api", "severity": "critical"}
"""What the outage playbook's ``service-down`` rule pages on (``playbooks/outage.yaml``)."""


class DemoEventError(CrisisCommsError):
    """The demo's alert was refused or its acknowledgement did not go out in time."""


@dataclass(frozen=True)
class DemoEvent:
    """What the demo's alert did."""

    incident_ref: str
    seconds: float
    """From the POST to the acknowledgement recorded sent on every channel."""
    url: str
    """Where the alert was posted."""
    token_file: Path
    sent: dict[str, int] = field(default_factory=dict)
    """Recipients sent per channel."""


def alert_group(now: datetime) -> dict[str, Any]:
    """A firing Alertmanager (v4) group that the outage playbook takes: the adapter's own
    documented example with the labels of ``ALERT_LABELS`` and a new group and fingerprint."""
    from crisiscomms.intake.adapters.registry import ADAPTERS
    from crisiscomms.intake.contract import SourceKind

    schema = ADAPTERS[SourceKind.alertmanager].payload_model.model_json_schema()
    group: dict[str, Any] = copy.deepcopy(schema["examples"][0])
    run = uuid.uuid4().hex[:12]
    group["groupKey"] = f'{{}}:{{alertname="HighErrorRate",demo="{run}"}}'
    group["groupLabels"] = {"alertname": "HighErrorRate"}
    group["commonLabels"] = dict(ALERT_LABELS)
    group["commonAnnotations"] = {"summary": "API 5xx ratio above 20% (demo)"}
    started = now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    group["alerts"] = [{**group["alerts"][0], "labels": dict(ALERT_LABELS),
                        "annotations": {"summary": "API 5xx ratio is 31% (demo)"},
                        "fingerprint": run, "startsAt": started, "status": "firing"}]
    group["status"] = "firing"
    return group


def _source_token(settings: Any, token_file: Path) -> None:
    from crisiscomms.intake.sources import SourceStore

    store = SourceStore.from_settings(settings)
    names = {entry.name for entry in store.entries()}
    token = (store.rotate(SOURCE, grace_hours=0) if SOURCE in names
             else store.add(SOURCE, "alertmanager"))
    token_file.parent.mkdir(parents=True, exist_ok=True)
    token_file.touch(mode=0o600)
    token_file.chmod(0o600)
    token_file.write_text(token + "\n", encoding="utf-8")


def acknowledged(engine: Any, incident_ref: str,
                 channels: Collection[str] | None = None) -> dict[str, int] | None:
    """Recipients sent per channel once nothing of the incident is left planned on
    ``channels`` (None: on any channel) and each of them has sent; None before."""
    from sqlmodel import select

    from crisiscomms.core.database import session_scope
    from crisiscomms.delivery.ledger import channel_counts, pending_by_channel
    from crisiscomms.incident.models import Incident

    with session_scope(engine) as session:
        incident = session.exec(select(Incident).where(Incident.ref == incident_ref)).first()
        if incident is None or incident.id is None:
            return None
        pending = pending_by_channel(session, incident.id)
        if any(ids for channel, ids in pending.items() if channels is None or channel in channels):
            return None
        counts = channel_counts(session, incident.id)
    sent = {channel: states.get("sent", 0) for channel, states in counts.items()
            if channels is None or channel in channels}
    wanted = set(channels) if channels is not None else set(sent)
    return sent if wanted and wanted <= set(sent) and all(sent.values()) else None


AppFactory = Callable[..., Any]
"""``api.intake.create_app`` (a face: the CLI passes it in, as the drill's listening app)."""
LoopFactory = Callable[[Any, Any], Any]
"""``flows.dispatch.make_outbox_loop``."""


def post_demo_alert(env: Mapping[str, str], *, data_dir: Path, create_app: AppFactory,
                    make_outbox_loop: LoopFactory, timeout_s: float = 120.0) -> DemoEvent:
    """Serve the intake API (``create_app``, its outbox dispatched by ``make_outbox_loop``'s
    loop) with ``env`` (the demo's ``CRISISCOMMS_*``, wired to its emulators), post one alert
    and wait for its acknowledgement; the API stops after."""
    import uvicorn

    from crisiscomms.core.database import make_engine
    from crisiscomms.core.settings import Settings
    from crisiscomms.testing.drill import environment
    from crisiscomms.testing.pgcluster import free_port

    token_file = data_dir / "demo-alertmanager.token"
    wired = {**env, "CRISISCOMMS_INTAKE_DISPATCH": "inline",
             "CRISISCOMMS_INTAKE_SOURCES_PATH": str(data_dir / "intake_sources.toml")}
    with environment(wired):
        settings = Settings()
        _source_token(settings, token_file)
        engine = make_engine(settings.resolved_database_url)
        loop = make_outbox_loop(settings, engine).start()
        app = create_app(settings, engine=engine, on_stored=loop.wake)
        port = free_port()
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                               log_level="warning"))
        thread = threading.Thread(target=server.run, name="demo-intake-api", daemon=True)
        thread.start()
        url = f"http://127.0.0.1:{port}/v1/events/alertmanager/{SOURCE}"
        try:
            deadline = time.monotonic() + 30
            while not server.started:
                if time.monotonic() > deadline or not thread.is_alive():
                    raise DemoEventError("the demo's intake API did not start")
                time.sleep(0.05)
            token = token_file.read_text(encoding="utf-8").strip()
            started = time.perf_counter()
            answer = httpx.post(url, json=alert_group(datetime.now(UTC)), timeout=30,
                                headers={"Authorization": f"Bearer {token}"})
            if answer.status_code != 202:
                raise DemoEventError(f"the demo alert was refused: {answer.status_code} "
                                     f"{answer.text[:300]}")
            incident_ref = answer.json()["events"][0]["incident_ref"]
            deadline = time.monotonic() + timeout_s
            while (sent := acknowledged(engine, incident_ref)) is None:
                if time.monotonic() > deadline:
                    raise DemoEventError(f"{incident_ref}: no acknowledgement {timeout_s:g} s "
                                         "after the alert (see the dashboard's Failures page)")
                time.sleep(0.05)
            seconds = time.perf_counter() - started
        finally:
            server.should_exit = True
            thread.join(timeout=10)
            loop.stop()
            engine.dispose()
    return DemoEvent(incident_ref=incident_ref, seconds=round(seconds, 2), url=url,
                     token_file=token_file, sent=sent)
