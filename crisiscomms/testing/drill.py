"""Drills: rehearse a playbook end to end against the local emulators.

A drill runs every stage of a playbook (auto-sent stages as they would be, the others approved
by the drill) through the real flow, channels and ledger, in a throwaway data folder and
database by default, and reports what the ledger recorded beside what the emulators received.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import func, select
from sqlmodel import col

from crisiscomms.audience.recipients import PRESS_LIST
from crisiscomms.channels import CHANNEL_CLASSES
from crisiscomms.core.database import init_db, make_engine, session_scope
from crisiscomms.core.errors import FactsError
from crisiscomms.core.settings import Settings
from crisiscomms.delivery.ledger import channel_counts, release_deferred
from crisiscomms.delivery.models import Delivery, DeliveryEvent, DeliveryState
from crisiscomms.delivery.sms_events import STATUSES as SMS_STATUS_EVENTS
from crisiscomms.identity.identities import system_identity
from crisiscomms.incident.models import Message
from crisiscomms.incident.service import approve, trigger
from crisiscomms.playbook.loader import load_playbook
from crisiscomms.testing.asgi import serve_app
from crisiscomms.testing.audiences import ensure_drill_audience
from crisiscomms.testing.crowd import CSAT
from crisiscomms.testing.crowd_drill import (
    ListenAppFactory,
    Played,
    crowd_report,
    drill_listening_env,
    free_port,
    listening_app,
    play_crowd,
)
from crisiscomms.testing.emulators import EmulatorPair, start_emulators
from crisiscomms.testing.emulators.pair import DRILL_SMS_FROM

PublishFn = Callable[[str, str], Mapping[str, Any]]
ResumeFn = Callable[[str, float | None], Mapping[str, Any]]
SmsAppFactory = Callable[[Settings], Any]
"""Makes the SMS app (``crisiscomms.api.sms.create_app``): the face running the drill passes
it in, since ``testing`` may not import a face."""
"""``crisiscomms resume``'s runner: reconcile, then publish every planned row of an incident."""
DRILL_PRESS = 5
"""Journalists on the drill press list (for playbooks with a press release)."""
DRILL_APPROVERS = (system_identity("drill-approver-1"), system_identity("drill-approver-2"))
"""Two synthetic people, neither the trigger's ``drill`` identity, for two-person playbooks."""
DRILL_ACTOR = system_identity("drill")


@contextmanager
def environment(overrides: Mapping[str, str]) -> Iterator[None]:
    """Set ``CRISISCOMMS_*`` variables for this process (the flow's tasks read Settings)."""
    saved = {k: os.environ.get(k) for k in overrides}
    os.environ.update(overrides)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


FACTS_FILE_SUFFIXES = (".json", ".yaml", ".yml")


def load_facts_file(path: Path) -> dict[str, Any]:
    """A facts file: ``.json`` read as JSON, ``.yaml``/``.yml`` as YAML (safe load); FactsError
    naming the file (and the line and column of a syntax error) otherwise. The facts themselves
    are checked when the fact sheet is built."""
    suffix = path.suffix.lower()
    if suffix not in FACTS_FILE_SUFFIXES:
        raise FactsError(f"facts file {path}: unknown kind {path.suffix or '(no extension)'!r}; "
                         "name it .json, .yaml or .yml", field="facts",
                         reason="unknown facts file extension")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise FactsError(f"cannot read facts file {path}: not UTF-8 (byte {exc.start + 1})",
                         field="facts") from None
    except OSError as exc:
        raise FactsError(f"cannot read facts file {path}: {exc.strerror or exc}",
                         field="facts") from None
    if suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise FactsError(f"facts file {path} is not valid JSON: {exc.msg} at line "
                             f"{exc.lineno}, column {exc.colno}", field="facts",
                             reason=exc.msg) from None
    else:
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            problem = getattr(exc, "problem", None) or str(exc)
            raise FactsError(f"facts file {path} is not valid YAML: {problem}{where}",
                             field="facts", reason=str(problem)) from None
    if not isinstance(data, dict):
        raise FactsError(f"facts file {path} must hold a mapping of fact names to values",
                         field="facts")
    return data


def emulator_environment(pair: EmulatorPair, sendgrid_key: str, x_token: str) -> dict[str, str]:
    return {
        "CRISISCOMMS_SENDGRID_API_KEY": sendgrid_key,
        "CRISISCOMMS_SENDGRID_BASE_URL": pair.sendgrid.url,
        "CRISISCOMMS_X_BEARER_TOKEN": x_token,
        "CRISISCOMMS_X_BASE_URL": pair.x.url,
        # what `crisiscomms listen` verifies the emulator's signed Event Webhook batches with
        "CRISISCOMMS_SENDGRID_WEBHOOK_PUBLIC_KEY": pair.sendgrid.webhook_public_key,
        "CRISISCOMMS_TWILIO_ACCOUNT_SID": pair.twilio.account_sid,
        "CRISISCOMMS_TWILIO_AUTH_TOKEN": pair.twilio.auth_token,
        "CRISISCOMMS_TWILIO_BASE_URL": pair.twilio.url,
        "CRISISCOMMS_SMS_FROM": DRILL_SMS_FROM,
        # Mastodon, Bluesky, Slack, Teams and the outgoing webhook, when their emulators run
        **(pair.more.environment() if pair.more is not None else {}),
    }


def workspace_environment(
    data_dir: Path, pair: EmulatorPair, sendgrid_key: str, x_token: str, *,
    database_url: str | None = None, playbooks_dir: Path | None = None,
    templates_dir: Path | None = None,
) -> dict[str, str]:
    """The ``CRISISCOMMS_*`` environment of a run wired to the emulators: its data
    folder, its database (default: SQLite under the data folder), the playbooks and templates
    (default: the workspace's own), both providers' URLs and credentials, and drill mode
    (provisional approvals may be used: nothing reaches a person) (drills, demos, tests and
    benches)."""
    env = {
        "CRISISCOMMS_MODE": "drill",
        "CRISISCOMMS_DATA_DIR": str(data_dir),
        **emulator_environment(pair, sendgrid_key, x_token),
    }
    for key, value in (("CRISISCOMMS_DATABASE_URL", database_url),
                       ("CRISISCOMMS_PLAYBOOKS_DIR", playbooks_dir),
                       ("CRISISCOMMS_TEMPLATES_DIR", templates_dir)):
        if value is not None:
            env[key] = str(value)
    return env


def run_drill(
    *,
    playbook_name: str,
    recipients: int,
    publish: PublishFn,
    base: Settings,
    facts_file: Path | None = None,
    out: Path | None = None,
    data_dir: Path | None = None,
    emulators: tuple[EmulatorPair, str, str] | None = None,
    reactions: int = 0,
    listen_app: ListenAppFactory | None = None,
    environment_overrides: Mapping[str, str] | None = None,
    resume: ResumeFn | None = None,
    sms_app: SmsAppFactory | None = None,
) -> dict[str, Any]:
    """Run every stage of ``playbook_name`` to ``recipients`` synthetic subscribers.

    SMS of a stage that is not urgent wait out each recipient's quiet hours (``deferred`` in
    the ledger); a drill compresses time: with ``resume``, once every stage ran, the deferred
    rows are released as if their windows had ended and sent, and the report counts them under
    ``deferred``. With ``sms_app`` the SMS app runs beside the drill and every message asks
    the Twilio emulator for signed status callbacks to it: the report gains ``sms_status``
    (the ledger's SMS delivery events of the incident, by status).

    ``reactions``: a crowd of that many reacts through the real receivers
    (:mod:`crisiscomms.testing.crowd_drill`): before the resolution stage (or after the only
    stage) X replies and mentions, email replies, tickets and provider events, then the
    watcher's pass (spikes, alerts, automatic replies); after the resolution, CSAT ratings
    (a tenth of them). The report gains ``reactions``. ``listen_app`` makes the listening app
    (the face running the drill passes ``crisiscomms.api.listen.create_app``'s wrapper).
    ``environment_overrides``: ``CRISISCOMMS_*`` values set last, over the drill's own (a test
    pinning every secret the drill uses, to look for them in everything the drill wrote)."""
    if reactions > 0 and listen_app is None:
        raise ValueError("a drill with reactions needs listen_app (the listening app factory)")
    started = time.perf_counter()
    playbook = load_playbook(playbook_name, base.playbooks_dir)  # unknown playbook: fail first
    playbook.check_channels(CHANNEL_CLASSES)
    # channels whose rows count recipients (reported per locale), and those to the press list
    # (each stage's release is kept under ``press_release/``)
    addressed = [n for n, c in CHANNEL_CLASSES.items() if c.recipients is not None]
    press_channels = [n for n, c in CHANNEL_CLASSES.items() if c.recipients == PRESS_LIST]
    facts: dict[str, Any] = dict(playbook.drill_facts)
    if facts_file is not None:
        facts.update(load_facts_file(facts_file))
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    facts["incident_ref"] = f"{facts.get('incident_ref', 'DRILL-' + playbook.name.upper())}-{stamp}"

    temp = None if data_dir is not None else tempfile.mkdtemp(prefix="crisiscomms-drill-")
    root = data_dir or Path(str(temp))
    own_emulators = emulators is None
    if emulators is None:
        sg_key, x_token = f"SG.{secrets.token_urlsafe(24)}", secrets.token_urlsafe(24)
        pair = start_emulators(sendgrid_key=sg_key, x_token=x_token)
    else:
        pair, sg_key, x_token = emulators
    overrides = workspace_environment(root, pair, sg_key, x_token,
                                      playbooks_dir=base.playbooks_dir,
                                      templates_dir=base.templates_dir)
    if data_dir is None:
        overrides["CRISISCOMMS_DATABASE_URL"] = f"sqlite:///{root / 'crisiscomms.db'}"
        overrides["CRISISCOMMS_STATUS_PAGE_DIR"] = str(root / "status_page")
    listen_port = free_port() if reactions > 0 else 0
    if reactions > 0:
        overrides.update(drill_listening_env(f"http://127.0.0.1:{listen_port}"))
    overrides.update(environment_overrides or {})
    sms_port = free_port() if sms_app is not None else 0
    if sms_app is not None:
        overrides["CRISISCOMMS_SMS_URL"] = f"http://127.0.0.1:{sms_port}"
    try:
        with environment(overrides), ExitStack() as stack:
            settings = Settings()
            engine = make_engine(settings.resolved_database_url)
            init_db(engine)
            with session_scope(engine) as session:
                lists = {CHANNEL_CLASSES[c].recipients for s in playbook.stages
                         for c in playbook.channels_of(s, CHANNEL_CLASSES)}
                press = DRILL_PRESS if PRESS_LIST in lists else 0
                ensure_drill_audience(session, recipients, locales=playbook.locales,
                                      spread_time_zones=True, press=press)
            if sms_app is not None:
                stack.enter_context(serve_app(sms_app(settings), sms_port, name="drill-sms"))
            stages = []
            incident_id = None
            crowd: _CrowdRun | None = None
            if reactions > 0:
                assert listen_app is not None
                crowd = _CrowdRun(settings, engine, pair, reactions, listen_port,
                                  vip=playbook.listening.vip, make_app=listen_app)
                stack.enter_context(crowd.running())
            last = playbook.stages[-1]
            resolves = len(playbook.stages) > 1 and last.incident_status == "resolved"
            for stage in playbook.stages:
                if crowd is not None and resolves and stage is last:
                    assert incident_id is not None
                    crowd.react(incident_id)  # while the incident is open
                bundle = trigger(engine, settings, CHANNEL_CLASSES, playbook_name=playbook.name,
                                 facts=facts, stage=stage.id, actor=DRILL_ACTOR, drill=True)
                incident_id = bundle.incident_id
                for approver in DRILL_APPROVERS[:playbook.approvals.required]:
                    if bundle.approved:
                        break
                    bundle = approve(engine, incident_ref=bundle.incident_ref, stage=stage.id,
                                     approver=approver, kind="drill",
                                     playbooks_dir=settings.playbooks_dir, settings=settings)
                result = publish(bundle.incident_ref, stage.id)
                stages.append({"stage": stage.id, "auto_send": stage.auto_send,
                               "channels": result.get("channels", {}),
                               "errors": result.get("errors", [])})
            deferred: dict[str, int] = {}
            if resume is not None and incident_id is not None:
                deferred = _send_deferred(engine, incident_id, facts["incident_ref"], resume)
            if crowd is not None and incident_id is not None:
                if resolves:
                    crowd.rate(incident_id)
                else:
                    crowd.react(incident_id)
            if sms_app is not None:
                pair.twilio.flush_callbacks(60)
            with session_scope(engine) as session:
                counts = channel_counts(session, incident_id)
                sms_status = {str(event): int(n) for event, n in session.execute(
                    select(col(DeliveryEvent.event), func.count())
                    .where(col(DeliveryEvent.incident_id) == incident_id,
                           col(DeliveryEvent.delivery_id).is_not(None),
                           col(DeliveryEvent.event).in_(SMS_STATUS_EVENTS))
                    .group_by(col(DeliveryEvent.event))).all()} if sms_app else {}
                delivered = session.execute(
                    select(col(Delivery.key), col(Delivery.channel), col(Delivery.locale),
                           col(Delivery.recipient_count))
                    .where(col(Delivery.incident_id) == incident_id)).all()
                press_keys = {str(k): f"{stage}.{loc}" for k, stage, loc in session.execute(
                    select(col(Delivery.key), col(Message.stage), col(Delivery.locale))
                    .join(Message, col(Message.id) == col(Delivery.message_id))
                    .where(col(Delivery.incident_id) == incident_id,
                           col(Delivery.channel).in_(press_channels))).all()}
            key_locale = {str(k): str(loc) for k, _, loc, _ in delivered}
            by_locale: dict[str, dict[str, int]] = {}
            for _, channel, loc, n in delivered:
                if channel in addressed:
                    bucket = by_locale.setdefault(str(channel), {})
                    bucket[str(loc)] = bucket.get(str(loc), 0) + int(n)
            stats = {emulator.channel: emulator.stats() for emulator in pair.all()}
            sg_stats = stats[pair.sendgrid.channel]
            report: dict[str, Any] = {
                "incident_id": facts["incident_ref"],
                "playbook": playbook.name,
                "recipients": recipients,
                "channels": {
                    channel: {
                        "planned": sum(c.values()),
                        "sent": c.get("sent", 0),
                        "failed": c.get("failed", 0),
                    }
                    for channel, c in counts.items()
                },
                "emulator_received": {
                    pair.sendgrid.channel: sg_stats["recipients"],
                    **{name: s["accepted_messages"] for name, s in stats.items()
                       if name != pair.sendgrid.channel},
                },
                "duplicates": sum(int(s["duplicates"]) for s in stats.values()),
                "duplicates_by_channel": {name: int(s["duplicates"])
                                          for name, s in stats.items()},
                "deferred": deferred,
                **({"sms_status": sms_status} if sms_app is not None else {}),
                "recipients_by_locale": by_locale,
                "stages": stages,
            }
            if crowd is not None and incident_id is not None:
                report["reactions"] = crowd.report(incident_id)
            if out is not None:
                _keep_outputs(out, settings, pair, key_locale, press_keys)
                report["out"] = str(out)
            engine.dispose()
            report["elapsed_s"] = round(time.perf_counter() - started, 3)
            return report
    finally:
        if own_emulators:
            pair.stop()
        if temp is not None:
            shutil.rmtree(temp, ignore_errors=True)


def _send_deferred(engine: Any, incident_id: int, incident_ref: str,
                   resume: ResumeFn) -> dict[str, int]:
    """Rows deferred by quiet hours, released as if their windows had ended and published
    through ``resume``; their recipients by channel."""
    with session_scope(engine) as session:
        rows = session.execute(
            select(col(Delivery.channel), func.sum(col(Delivery.recipient_count)),
                   func.max(col(Delivery.not_before)))
            .where(col(Delivery.incident_id) == incident_id,
                   col(Delivery.state) == DeliveryState.deferred)
            .group_by(col(Delivery.channel))).all()
    if not rows:
        return {}
    latest = max(r[2] for r in rows if r[2] is not None)
    with session_scope(engine) as session:
        release_deferred(session, now=latest, incident_id=incident_id)
    resume(incident_ref, None)
    return {str(channel): int(count or 0) for channel, count, _ in rows}


class _CrowdRun:
    """A drill's reacting crowd: the listening app while the stages publish (the SendGrid
    emulator posts its signed events to it), the crowd's reactions, the watcher's pass."""

    def __init__(self, settings: Settings, engine: Any, pair: EmulatorPair, count: int,
                 port: int, *, vip: tuple[str, ...], make_app: ListenAppFactory) -> None:
        from crisiscomms.reactions.triage.workspace import workspace_triager

        self.settings, self.engine, self.pair, self.port = settings, engine, pair, port
        self.count, self.vip, self.make_app = count, vip, make_app
        self.ratings = count // 10
        self.triager = workspace_triager(settings)
        self.url = f"http://127.0.0.1:{port}"
        self.played: list[Played] = []
        self.watch: dict[str, Any] = {}
        self.started = time.perf_counter()

    @contextmanager
    def running(self) -> Iterator[None]:
        with listening_app(self.make_app, self.settings, self.triager, self.port):
            self.pair.sendgrid.set_event_webhook(self.url + "/v1/sendgrid/events")
            try:
                yield
            finally:
                self.pair.sendgrid.flush_events(30)
                self.pair.sendgrid.set_event_webhook(None)

    def _play(self, incident_id: int, count: int, **which: Any) -> None:
        self.played.append(play_crowd(
            self.engine, self.settings, self.pair, incident_id=incident_id, count=count,
            triager=self.triager, listen_url=self.url, seed=len(self.played), vip=self.vip,
            **which))

    def react(self, incident_id: int) -> None:
        """Everything but ratings, then one pass of the watcher (the incident is open)."""
        from crisiscomms.channels.alerts import alert_targets
        from crisiscomms.channels.registry import build_channels
        from crisiscomms.reactions.watch import watch_once

        self._play(incident_id, self.count - self.ratings, skip=(CSAT,))
        self.pair.sendgrid.flush_events(30)
        result = watch_once(self.engine, self.settings, channels=build_channels(self.settings),
                            targets=alert_targets(self.settings))
        self.watch = {"spikes": len(result.spikes), "alerts_sent": len(result.alerts_sent),
                      "alerts_failed": len(result.alerts_failed),
                      "automatic_replies": result.replies.sent,
                      "errors": [*result.errors, *result.replies.errors]}

    def rate(self, incident_id: int) -> None:
        """The resolution's one-click ratings."""
        self._play(incident_id, self.ratings, only=(CSAT,))

    def report(self, incident_id: int) -> dict[str, Any]:
        self.pair.sendgrid.flush_events(30)
        return {**crowd_report(self.engine, incident_id, self.played), **self.watch,
                "elapsed_s": round(time.perf_counter() - self.started, 3)}


def _keep_press_release(folder: Path, name: str, record: Mapping[str, Any]) -> None:
    """One journalist's copy of a stage's press release, exactly as SendGrid received it (dates
    and names filled in), once per stage and locale."""
    folder.mkdir(exist_ok=True)
    if not (folder / f"{name}.txt").exists():
        (folder / f"{name}.html").write_text(str(record.get("html", "")), encoding="utf-8")
        (folder / f"{name}.txt").write_text(
            f"To: {record.get('to')}\nSubject: {record.get('subject')}\n\n"
            f"{record.get('text', '')}\n", encoding="utf-8")


def _keep_outputs(out: Path, settings: Settings, pair: EmulatorPair,
                  key_locale: Mapping[str, str] | None = None,
                  press_keys: Mapping[str, str] | None = None) -> None:
    out.mkdir(parents=True, exist_ok=True)
    site = settings.resolved_status_page_dir / "site"  # the live build (a symlink)
    target = out / "status_page"
    if site.exists() and site.resolve() != target.resolve():
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(site, target, symlinks=False)
    support = settings.data_dir / "support"
    if support.is_dir() and support.resolve() != (out / "support").resolve():
        shutil.copytree(support, out / "support", dirs_exist_ok=True)
    email_path, x_path = out / "sent.email.jsonl", out / "sent.x.jsonl"
    sms_path = out / "sent.sms.jsonl"
    pair.sendgrid.export_jsonl(email_path)
    pair.x.export_jsonl(x_path)
    pair.twilio.export_jsonl(sms_path)
    more_paths = []
    for emulator in (pair.more.all() if pair.more is not None else []):
        more_paths.append(out / f"sent.{emulator.channel}.jsonl")
        emulator.export_jsonl(more_paths[-1])
    with (out / "sent.jsonl").open("w", encoding="utf-8") as sink:
        for part in (x_path, *more_paths, email_path, sms_path):
            with part.open(encoding="utf-8") as source:
                for line in source:
                    record = json.loads(line)
                    resolved = (key_locale or {}).get(str(record.get("key")))
                    if resolved is not None:  # the locale the ledger resolved for the delivery
                        record["locale"] = resolved
                    press_name = (press_keys or {}).get(str(record.get("key")))
                    if press_name is not None:
                        _keep_press_release(out / "press_release", press_name, record)
                    sink.write(json.dumps(record, ensure_ascii=False) + "\n")
            part.unlink()
    (out / "README.txt").write_text(
        "status_page/  the generated public status page (open status_page/index.html)\n"
        "support/      the unified holding statements for support agents\n"
        "sent.jsonl    every message exactly as the emulators received it, with the\n"
        "              locale the ledger resolved for its delivery\n"
        "press_release/ the press release of each stage and locale (HTML and text), as sent\n"
        "              to the press list\n",
        encoding="utf-8",
    )


def dumps(report: Mapping[str, Any]) -> str:
    return json.dumps(report, sort_keys=False, ensure_ascii=False)
