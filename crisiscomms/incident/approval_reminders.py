"""What a reminder says when a flow run has waited too long for an approval.

``flows/handle_event.py`` waits for an approval in ``approval_reminder_s`` steps; each step that
ends without one reminds the PR lead (``channels/alerts.py``: email, Slack, Teams) and waits
again; a reminder never sends the stage. The words are templates
(``incident/templates/approval_reminder.*.j2``), rendered as plain text; each target escapes
them for its format.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Protocol
from urllib.parse import quote

from jinja2 import FileSystemLoader, StrictUndefined
from jinja2.sandbox import ImmutableSandboxedEnvironment
from sqlmodel import Session, select

from crisiscomms.incident.flow_waits import waited_s
from crisiscomms.incident.models import Approval, FlowWait, Incident
from crisiscomms.incident.service import FIRST_OF_TWO
from crisiscomms.playbook.loader import load_playbook

_TEMPLATES = Path(__file__).resolve().parent / "templates"


@dataclass(frozen=True)
class ApprovalReminder:
    """One reminder: no secret; texts as rendered (each format escapes them)."""

    wait_id: int
    incident_ref: str
    incident_title: str
    stage: str
    bundle_hash: str
    waited_s: float
    reminders: int
    """Reminders sent before this one."""
    required: int
    approved_by: tuple[str, ...]
    link: str | None
    """The dashboard's Approvals page of the incident (None: no dashboard URL configured)."""
    subject: str
    text: str

    @property
    def key(self) -> str:
        """The idempotency key of this reminder at the email provider."""
        return f"approval-reminder-{self.wait_id}-{self.reminders + 1}"


class ReminderTarget(Protocol):
    """One place reminders go (``channels/alerts.py``: email, Slack, Teams)."""

    @property
    def name(self) -> str: ...

    def remind(self, reminder: ApprovalReminder) -> None:
        """Deliver the reminder or raise (the reason carries no secret)."""
        ...


def approvals_link(dashboard_url: str | None, incident_ref: str) -> str | None:
    """The dashboard's Approvals page showing an incident (``?incident=REF``)."""
    if not dashboard_url:
        return None
    return f"{dashboard_url.rstrip('/')}/approvals?incident={quote(incident_ref, safe='')}"


def waited_words(seconds: float) -> str:
    """``45 s``, ``15 min``, ``2 h 5 min``: how long, for people."""
    total = int(seconds)
    if total < 60:
        return f"{total} s"
    minutes = total // 60
    if minutes < 60:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60} min"


@lru_cache(maxsize=1)
def _environment() -> ImmutableSandboxedEnvironment:
    return ImmutableSandboxedEnvironment(loader=FileSystemLoader(_TEMPLATES),
                                         undefined=StrictUndefined, autoescape=False,
                                         keep_trailing_newline=False)


def reminder_for(session: Session, wait: FlowWait, *, playbooks_dir: Path,
                 dashboard_url: str | None) -> ApprovalReminder:
    """The reminder for ``wait`` now: who approved so far (a first of two), how long it has
    waited, the link to approve it."""
    incident = session.get(Incident, wait.incident_id)
    if incident is None or wait.id is None:
        raise LookupError(f"flow wait {wait.id}: incident {wait.incident_id} does not exist")
    firsts = session.exec(select(Approval).where(
        Approval.incident_id == wait.incident_id, Approval.stage == wait.stage,
        Approval.bundle_hash == wait.bundle_hash, Approval.kind == FIRST_OF_TWO)).all()
    required = load_playbook(incident.playbook, playbooks_dir).approvals.required
    approved_by = tuple(a.approver for a in firsts)
    link = approvals_link(dashboard_url, incident.ref)
    values: dict[str, object] = {
        "incident_ref": incident.ref, "incident_title": incident.title, "stage": wait.stage,
        "bundle_hash": wait.bundle_hash, "waited": waited_words(waited_s(wait)),
        "reminders": wait.reminders, "required": required,
        "approved_by": list(approved_by), "link": link}
    env = _environment()
    subject = " ".join(env.get_template("approval_reminder.subject.j2").render(values).split())
    text = env.get_template("approval_reminder.text.j2").render(values).strip()
    return ApprovalReminder(
        wait_id=wait.id, incident_ref=incident.ref, incident_title=incident.title,
        stage=wait.stage, bundle_hash=wait.bundle_hash, waited_s=waited_s(wait),
        reminders=wait.reminders, required=required,
        approved_by=approved_by, link=link, subject=subject,
        text=text)
