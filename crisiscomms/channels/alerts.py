"""Alerts to the PR lead: email through SendGrid, Slack and Microsoft Teams incoming webhooks.
Two kinds: reaction spikes (``send``) and approval reminders of a flow run that has waited
too long (``remind``, ``incident/approval_reminders.py``).

The domain (``reactions/spikes.py``) decides what an alert says (:class:`SpikeAlert`: the
numbers, the top examples, the dashboard link); this module only formats it for each place and
sends it over HTTP, like every channel. Each target implements the domain's ``AlertTarget``
(``name`` and ``send``), and ``alert_pending`` records which target had which spike, so a
failed target is retried on the next watcher pass and the others are not asked twice.

Decisions:

- **Customer text is escaped for each format, never interpreted.** Slack: examples go in
  ``plain_text`` blocks (no mrkdwn: a ``*`` or a ``<!channel>`` in a tweet stays text), and the
  one mrkdwn line (the link) escapes ``&``, ``<`` and ``>`` as Slack asks. Teams: an Adaptive
  Card whose ``TextBlock`` markdown characters are backslash-escaped. Email: a text part as
  sent and an HTML part escaped with ``html.escape``.
- **No secret leaves in an error.** A webhook URL is a credential (``SecretStr`` in settings):
  a failure says the target, the status code or the kind of network error, never the URL or
  the provider's body echoed with it. The SendGrid key goes only in the Authorization header.
- **Long texts are shortened for the alert only** (``EXAMPLE_CHARS``): the alert is a pointer
  to the dashboard, where the whole text is shown (escaped).
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from typing import Any, ClassVar

import httpx
from pydantic import SecretStr

from crisiscomms.core.settings import Settings
from crisiscomms.incident.approval_reminders import ApprovalReminder, ReminderTarget
from crisiscomms.reactions.spikes import AlertTarget, Example, SpikeAlert

EXAMPLE_CHARS = 280
"""Characters of an example's text shown in an alert."""


class AlertError(Exception):
    """An alert was not delivered; the message names the target and carries no secret."""


def _short(text: str, limit: int = EXAMPLE_CHARS) -> str:
    clean = "".join(ch if ch.isprintable() or ch in "\n" else " " for ch in text).strip()
    return clean if len(clean) <= limit else clean[: limit - 1] + "…"


def _label(example: Example) -> str:
    flags = []
    if example.needs_human:
        flags.append("needs a human")
    if example.sentiment:
        flags.append(example.sentiment)
    flags.extend(example.reasons)
    return f"{example.author} ({example.source}; {', '.join(flags) or 'unscored'})"


def _post(client: httpx.Client, target: str, url: str, *, json: Any,
          headers: dict[str, str] | None = None) -> None:
    try:
        response = client.post(url, json=json, headers=headers)
    except httpx.HTTPError as exc:
        raise AlertError(f"{target}: {type(exc).__name__} (no answer)") from None
    if response.status_code >= 300:
        raise AlertError(f"{target}: HTTP {response.status_code}")


# -- Slack ----------------------------------------------------------------------------------------


def slack_escape(text: str) -> str:
    """Slack's escaping of the three control characters of its text formats."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_payload(alert: SpikeAlert) -> dict[str, Any]:
    """A Block Kit message: header, the numbers, each example as plain text, the link."""
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": _short(alert.headline, 150)}},
        {"type": "section", "text": {"type": "plain_text",
                                     "text": f"{alert.incident_title}\n{alert.comparison}"}},
    ]
    for example in alert.examples:
        blocks.append({"type": "section", "text": {
            "type": "plain_text", "text": f"{_label(example)}:\n{_short(example.text)}"}})
    if alert.link:
        blocks.append({"type": "section", "text": {
            "type": "mrkdwn", "text": f"<{slack_escape(alert.link)}|Open the reactions page>"}})
    return {"text": alert.headline, "blocks": blocks}


def slack_reminder_payload(reminder: ApprovalReminder) -> dict[str, Any]:
    """A reminder as Block Kit: the subject, the text as plain text, the link."""
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": _short(reminder.subject, 150)}},
        {"type": "section", "text": {"type": "plain_text", "text": reminder.text}},
    ]
    if reminder.link:
        blocks.append({"type": "section", "text": {
            "type": "mrkdwn", "text": f"<{slack_escape(reminder.link)}|Open the approvals page>"}})
    return {"text": reminder.subject, "blocks": blocks}


class SlackAlerts:
    name: ClassVar[str] = "slack"

    def __init__(self, webhook_url: SecretStr, *, timeout_s: float = 10.0) -> None:
        self._url = webhook_url
        self.timeout_s = timeout_s

    def __repr__(self) -> str:
        return "SlackAlerts(webhook_url=SecretStr('**********'))"

    def send(self, alert: SpikeAlert) -> None:
        with httpx.Client(timeout=self.timeout_s) as client:
            _post(client, self.name, self._url.get_secret_value(), json=slack_payload(alert))

    def remind(self, reminder: ApprovalReminder) -> None:
        with httpx.Client(timeout=self.timeout_s) as client:
            _post(client, self.name, self._url.get_secret_value(),
                  json=slack_reminder_payload(reminder))


# -- Microsoft Teams ----------------------------------------------------------------------------

_TEAMS_MARKDOWN = re.compile(r"([\\`*_{}\[\]()#+\-.!<>|~])")


def teams_escape(text: str) -> str:
    """Backslash before every character Adaptive Card markdown reads (text shows as sent)."""
    return _TEAMS_MARKDOWN.sub(r"\\\1", text)


def teams_payload(alert: SpikeAlert) -> dict[str, Any]:
    """An Adaptive Card (1.4) in the message envelope incoming webhooks and Workflows take."""
    body: list[dict[str, Any]] = [
        {"type": "TextBlock", "size": "Medium", "weight": "Bolder", "wrap": True,
         "text": teams_escape(alert.headline)},
        {"type": "TextBlock", "wrap": True,
         "text": teams_escape(f"{alert.incident_title}. {alert.comparison}")},
    ]
    for example in alert.examples:
        body.append({"type": "TextBlock", "wrap": True, "weight": "Bolder",
                     "text": teams_escape(_label(example))})
        body.append({"type": "TextBlock", "wrap": True, "text": teams_escape(_short(example.text))})
    card: dict[str, Any] = {"$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                            "type": "AdaptiveCard", "version": "1.4", "body": body}
    if alert.link:
        card["actions"] = [{"type": "Action.OpenUrl", "title": "Open the reactions page",
                            "url": alert.link}]
    return {"type": "message", "attachments": [
        {"contentType": "application/vnd.microsoft.card.adaptive", "content": card}]}


def teams_reminder_payload(reminder: ApprovalReminder) -> dict[str, Any]:
    """A reminder as an Adaptive Card: the subject, the text (escaped), the link."""
    body = [{"type": "TextBlock", "size": "Medium", "weight": "Bolder", "wrap": True,
             "text": teams_escape(reminder.subject)}]
    body += [{"type": "TextBlock", "wrap": True, "text": teams_escape(line)}
             for line in reminder.text.splitlines() if line.strip()]
    card: dict[str, Any] = {"$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                            "type": "AdaptiveCard", "version": "1.4", "body": body}
    if reminder.link:
        card["actions"] = [{"type": "Action.OpenUrl", "title": "Open the approvals page",
                            "url": reminder.link}]
    return {"type": "message", "attachments": [
        {"contentType": "application/vnd.microsoft.card.adaptive", "content": card}]}


class TeamsAlerts:
    name: ClassVar[str] = "teams"

    def __init__(self, webhook_url: SecretStr, *, timeout_s: float = 10.0) -> None:
        self._url = webhook_url
        self.timeout_s = timeout_s

    def __repr__(self) -> str:
        return "TeamsAlerts(webhook_url=SecretStr('**********'))"

    def send(self, alert: SpikeAlert) -> None:
        with httpx.Client(timeout=self.timeout_s) as client:
            _post(client, self.name, self._url.get_secret_value(), json=teams_payload(alert))

    def remind(self, reminder: ApprovalReminder) -> None:
        with httpx.Client(timeout=self.timeout_s) as client:
            _post(client, self.name, self._url.get_secret_value(),
                  json=teams_reminder_payload(reminder))


# -- email through SendGrid ----------------------------------------------------------------------


def email_parts(alert: SpikeAlert) -> tuple[str, str, str]:
    """(subject, text, html) of the alert email; the HTML escapes every customer text."""
    lines = [alert.headline, "", alert.incident_title, alert.comparison, ""]
    for example in alert.examples:
        lines += [_label(example) + ":", _short(example.text), ""]
    if alert.link:
        lines.append(f"Reactions page: {alert.link}")
    items = "".join(f"<li><b>{html.escape(_label(e))}</b><br>{html.escape(_short(e.text))}</li>"
                    for e in alert.examples)
    link = (f'<p><a href="{html.escape(alert.link, quote=True)}">Open the reactions page</a></p>'
            if alert.link else "")
    body = (f"<p><b>{html.escape(alert.headline)}</b></p>"
            f"<p>{html.escape(alert.incident_title)}<br>{html.escape(alert.comparison)}</p>"
            f"<ul>{items}</ul>{link}")
    subject = _short(f"[{alert.incident_ref}] {alert.headline}", 150)
    return subject, "\n".join(lines).strip(), body


def reminder_email_parts(reminder: ApprovalReminder) -> tuple[str, str, str]:
    """(subject, text, html) of a reminder email; the HTML escapes every line."""
    paragraphs = "".join(f"<p>{html.escape(line)}</p>" for line in reminder.text.splitlines()
                         if line.strip())
    link = (f'<p><a href="{html.escape(reminder.link, quote=True)}">Open the approvals '
            'page</a></p>' if reminder.link else "")
    return _short(reminder.subject, 150), reminder.text, paragraphs + link


class EmailAlerts:
    name: ClassVar[str] = "email"

    def __init__(self, api_key: SecretStr, *, to: str, base_url: str, from_email: str,
                 from_name: str, timeout_s: float = 10.0) -> None:
        if "@" not in to:
            raise ValueError("the alert address must be an email address")
        self._api_key = api_key
        self.to = to
        self.base_url = base_url.rstrip("/")
        self.from_email = from_email
        self.from_name = from_name
        self.timeout_s = timeout_s

    def __repr__(self) -> str:
        return f"EmailAlerts(to={self.to!r}, base_url={self.base_url!r})"

    def send(self, alert: SpikeAlert) -> None:
        self._mail(*email_parts(alert), key=f"spike-alert-{alert.spike_id}")

    def remind(self, reminder: ApprovalReminder) -> None:
        self._mail(*reminder_email_parts(reminder), key=reminder.key)

    def _mail(self, subject: str, text: str, body_html: str, *, key: str) -> None:
        body = {
            "personalizations": [{"to": [{"email": self.to}]}],
            "from": {"email": self.from_email, "name": self.from_name},
            "subject": subject,
            "content": [{"type": "text/plain", "value": text},
                        {"type": "text/html", "value": body_html}],
            "custom_args": {"crisiscomms_key": key},
        }
        headers = {"Authorization": f"Bearer {self._api_key.get_secret_value()}"}
        with httpx.Client(timeout=self.timeout_s) as client:
            _post(client, self.name, f"{self.base_url}/v3/mail/send", json=body,
                  headers=headers)


def _targets(settings: Settings) -> list[EmailAlerts | SlackAlerts | TeamsAlerts]:
    targets: list[EmailAlerts | SlackAlerts | TeamsAlerts] = []
    timeout = settings.http_timeout_s
    if settings.alert_email_to and settings.sendgrid_api_key is not None:
        targets.append(EmailAlerts(settings.sendgrid_api_key, to=settings.alert_email_to,
                                   base_url=settings.sendgrid_base_url,
                                   from_email=settings.email_from,
                                   from_name=settings.email_from_name, timeout_s=timeout))
    if settings.alert_slack_webhook_url is not None:
        targets.append(SlackAlerts(settings.alert_slack_webhook_url, timeout_s=timeout))
    if settings.alert_teams_webhook_url is not None:
        targets.append(TeamsAlerts(settings.alert_teams_webhook_url, timeout_s=timeout))
    return targets


def alert_targets(settings: Settings) -> list[AlertTarget]:
    """Every alert target the settings configure (none: spikes are stored and shown, not
    sent)."""
    return list(_targets(settings))


def reminder_targets(settings: Settings) -> list[ReminderTarget]:
    """Where approval reminders go: the same email address and webhooks as spike alerts
    (none configured: a waiting flow run only logs its reminders)."""
    return list(_targets(settings))


def target_names(targets: Sequence[AlertTarget]) -> list[str]:
    return [t.name for t in targets]
