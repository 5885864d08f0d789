"""Settings: the only place that reads the environment (prefix ``CRISISCOMMS_``).

Settings belong to a workspace (:mod:`crisiscomms.core.workspace`): the one named by
``CRISISCOMMS_WORKSPACE`` (``crisiscomms --workspace DIR`` sets it), else the nearest folder
holding ``crisiscomms.toml`` from the current directory up. Its ``.env`` is read (from the
workspace root only, never from the current directory), and relative paths (``data_dir``,
``playbooks_dir``, ``templates_dir``, ``status_page_dir``) are relative to its root. Outside a
workspace, Settings needs those paths absolute, else it refuses with how to make one.
"""

from __future__ import annotations

import ipaddress
import os
import re
import textwrap
from pathlib import Path
from typing import Any, Literal, Self
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    DotEnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from crisiscomms.core.errors import NotInWorkspaceError
from crisiscomms.core.workspace import find_workspace, not_in_workspace_message

PLACEHOLDER_SECRETS = frozenset({"changeme", "change-me", "changethis", "secret", "xxx", "todo"})
ENV_PREFIX = "CRISISCOMMS_"
WORKSPACE_PATHS = ("data_dir", "playbooks_dir", "templates_dir", "status_page_dir",
                   "triage_model_path", "dashboard_users_path", "intake_sources_path")
"""Settings whose relative values are relative to the workspace root."""
PROVIDER_URLS = ("sendgrid_base_url", "x_base_url", "alert_slack_webhook_url",
                 "alert_teams_webhook_url")
"""Settings naming where a secret is sent (an API key, a token, or the URL itself): they must
be ``https://``, except to this machine (an emulator on loopback)."""


def is_loopback_host(host: str | None) -> bool:
    """``localhost``, ``127.0.0.0/8`` or ``::1``."""
    if not host:
        return False
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def provider_url_problem(url: str, *, secret: bool = False) -> str | None:
    """Why a provider URL must not be used (secrets would cross the network in clear, or go to
    no host at all), or None. ``secret``: the URL is itself a secret (a webhook), so the
    reason never quotes it."""
    try:
        parts = urlsplit(url.strip())
        host = parts.hostname
    except ValueError as exc:
        return f"is not a URL ({exc})"
    if parts.scheme not in ("https", "http") or not host:
        return "must be an https:// URL"
    if parts.username is not None or parts.password is not None:
        return "must not carry a user or password before the host"
    if parts.scheme == "http" and not is_loopback_host(host):
        where = "a host" if secret else f"{url.strip()!r}: {host}"
        return (f"is http:// to {where} that is not this machine, which would receive our "
                "credentials in clear; use https:// (http:// is only for an emulator on "
                "127.0.0.1, ::1 or localhost)")
    return None


class Settings(BaseSettings):
    """Where data lives and how to reach each channel.

    Secrets are ``SecretStr`` so they never show in logs, reprs or rendered pages. A placeholder
    secret (``changeme``...) is refused: better to fail at start-up than at 3 a.m.
    """

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_file=".env", extra="ignore",
                                      use_attribute_docstrings=True)

    workspace: Path | None = None
    """The workspace root (default: the nearest folder holding crisiscomms.toml, from the
    current directory up)."""
    data_dir: Path = Path("data")
    """Database, status page, support statements."""
    database_url: str | None = None
    """SQLAlchemy URL, e.g. postgresql+psycopg://user:password@host/crisiscomms (default: SQLite
    under data_dir)."""
    playbooks_dir: Path = Path("playbooks")
    """The playbooks (*.yaml)."""
    templates_dir: Path = Path("templates")
    """The templates, with approvals.lock."""
    status_page_dir: Path | None = None
    """Where the static status page is built (default: data_dir/status_page)."""
    status_page_url: str = "http://127.0.0.1:8030/"
    """The public address of the status page (every message links to it)."""
    subscriptions_url: str | None = None
    """Public base URL of the subscriptions app (``crisiscomms subscriptions``), e.g.
    ``https://status-api.example.com``: the status page's form posts to ``<url>/v1/subscribe``
    and emails link to ``<url>/v1/unsubscribe/<token>``. Unset: no form on the page."""
    subscribe_client_burst: int = Field(default=10, ge=1)
    """Subscribe requests one client (IP address) may make at once; then
    ``subscribe_client_per_minute``. Over it: 429 with ``Retry-After``, nothing sent."""
    subscribe_client_per_minute: float = Field(default=6.0, gt=0)
    """Subscribe requests per minute and client once its burst is spent."""
    subscribe_mailbox_burst: int = Field(default=2, ge=1)
    """Subscribe requests for one mailbox (``+tag`` and case folded) at once; then
    ``subscribe_mailbox_per_hour``. Over it: 429 with ``Retry-After``, nothing sent."""
    subscribe_mailbox_per_hour: float = Field(default=2.0, gt=0)
    """Subscribe requests per hour and mailbox once its burst is spent."""
    subscribe_senders: int = Field(default=16, ge=1, le=64)
    """Threads sending confirmation emails off the request path (each mostly waits for the
    provider: with 2 s per request, 16 send 8 emails a second)."""
    subscribe_queue_max: int = Field(default=10_000, ge=1)
    """Subscribe requests waiting for a sender; more: 503 with ``Retry-After``."""
    subscriptions_form_secret: SecretStr | None = None
    """Key of the HMAC behind the form token of the confirm and unsubscribe pages (the
    fallback when a browser sends no ``Origin``). Unset: a random key per process (set one
    when more than one process serves the subscriptions app)."""
    organization: str = "Example Corp"
    """The organisation's name in messages and on the status page."""
    operator: str = "pr-lead"
    """Who is acting when no identity is given (audit)."""
    mode: Literal["production", "drill"] = "production"
    """What an incident triggered here is: ``production`` sends only messages whose templates
    have a final approval and refuses the rest, naming them; ``drill`` (emulators, sandboxes,
    rehearsals) also sends provisionally approved ones, and marks its incidents as drills.
    ``crisiscomms drill`` and ``crisiscomms demo`` always run as drills."""
    keys_dir: Path | None = None
    """This user's private signing key for approvals (``crisiscomms keys init``); default
    ``$XDG_CONFIG_HOME/crisiscomms/keys``, else ``~/.config/crisiscomms/keys``. Never inside
    the workspace: a private key must not be committed."""

    sendgrid_api_key: SecretStr | None = None
    """SendGrid API key (unset: email is not configured and its deliveries fail visibly)."""
    sendgrid_base_url: str = "https://api.sendgrid.com"
    """SendGrid's API (or an emulator's)."""
    email_from: str = "status@example.com"
    """The sender address of every email."""
    email_from_name: str = "Example Corp Status"
    """The sender name of every email."""
    email_batch_size: int = Field(default=1000, ge=1, le=1000)
    """Recipients per SendGrid request (personalizations, at most 1,000)."""
    sendgrid_transport: Literal["sdk", "httpx"] = "httpx"
    """``httpx``: pooled connections and orjson bodies (the fan-out hot path, measured in
    docs/scaling.md); ``sdk``: the official SendGrid SDK, one connection per request."""

    x_bearer_token: SecretStr | None = None
    """X OAuth 2.0 user token (or the four OAuth 1.0a values below)."""
    x_consumer_key: SecretStr | None = None
    """X OAuth 1.0a consumer key."""
    x_consumer_secret: SecretStr | None = None
    """X OAuth 1.0a consumer secret."""
    x_access_token: SecretStr | None = None
    """X OAuth 1.0a access token."""
    x_access_token_secret: SecretStr | None = None
    """X OAuth 1.0a access token secret."""
    x_base_url: str = "https://api.twitter.com"
    """X's API (or an emulator's)."""

    mastodon_access_token: SecretStr | None = None
    """A Mastodon access token with ``write:statuses`` (unset: Mastodon is not configured)."""
    mastodon_base_url: str = "https://mastodon.social"
    """The Mastodon server of the account (or an emulator's)."""
    mastodon_rate_per_s: float | None = Field(default=1.0, gt=0)
    """Mastodon posts per second for this process (the server's 300 per 3 hours answers
    with 429 and ``X-RateLimit-Reset`` beyond it)."""
    bluesky_handle: str | None = None
    """The Bluesky account, e.g. ``status.example.com`` (with an app password)."""
    bluesky_app_password: SecretStr | None = None
    """An app password of that account (unset: Bluesky is not configured)."""
    bluesky_base_url: str = "https://bsky.social"
    """The account's PDS (or an emulator's)."""
    bluesky_rate_per_s: float | None = Field(default=1.0, gt=0)
    """Bluesky posts per second for this process."""
    media_proxy_url: str | None = None
    """Fetch the images Mastodon and Bluesky posts attach (a recall's photo) from this URL,
    the image's own address given as its ``url`` query parameter, instead of from that address
    (drills: the emulators' media endpoint). Unset: each image is fetched from its URL."""
    slack_webhook_url: SecretStr | None = None
    """A Slack incoming webhook of our own people's channel (support floor, executives): the
    holding statement of every stage (Block Kit). The URL is a secret."""
    slack_bot_token: SecretStr | None = None
    """A Slack bot token (``xoxb-...``, scopes chat:write and channels:history): with
    ``slack_channel``, stages after the first are posted in the first post's thread and the
    first post is updated in place (the Web API), instead of the incoming webhook."""
    slack_channel: str | None = None
    """The Slack channel id (``C...``) the bot posts to."""
    slack_base_url: str = "https://slack.com/api"
    """Slack's Web API (or an emulator's)."""
    slack_rate_per_s: float | None = Field(default=1.0, gt=0)
    """Slack allows one message per second per incoming webhook."""
    teams_webhook_url: SecretStr | None = None
    """A Microsoft Teams incoming webhook or Workflows URL for the same (Adaptive Card). The
    URL is a secret."""
    teams_rate_per_s: float | None = Field(default=2.0, gt=0)
    """Teams throttles a webhook at about four requests per second; we stay below."""
    webhook_url: str | None = None
    """An outgoing webhook for anything else: every message POSTed as JSON, signed the
    Standard Webhooks way (needs ``webhook_secret``)."""
    webhook_secret: SecretStr | None = None
    """The ``whsec_...`` secret the outgoing webhook is signed with
    (``crisiscomms sources`` makes the same kind for intake)."""
    webhook_rate_per_s: float | None = Field(default=None, gt=0)
    """Outgoing webhook requests per second (None: no limit of ours)."""
    twilio_account_sid: str | None = None
    """Twilio account SID (``AC…``; unset: SMS is not configured)."""
    twilio_auth_token: SecretStr | None = None
    """Twilio auth token: authenticates our requests and verifies ``X-Twilio-Signature`` on
    Twilio's requests to the SMS app (inbound STOP/HELP, status callbacks)."""
    twilio_base_url: str = "https://api.twilio.com"
    """Twilio's REST API (or an emulator's)."""
    sms_from: str | None = None
    """The sender: an E.164 number of the account, or a Messaging Service SID (``MG…``)."""
    sms_url: str | None = None
    """Public base URL of the SMS app (``crisiscomms sms serve``): each message asks Twilio to
    post its delivery status to ``<sms_url>/v1/sms/status``. Unset: no status callbacks."""
    sms_quiet_hours: str | None = "21:00-08:00"
    """Local quiet hours of every SMS recipient (``HH:MM-HH:MM``, in their own time zone):
    a stage that is not ``urgent`` is deferred until they end. Empty: none."""
    sms_rate_per_s: float | None = Field(default=None, gt=0)
    """Twilio Messages requests per second for this process (None: no limit of ours; Twilio
    queues what exceeds a sender's throughput and answers 429 over the account's concurrency)."""

    http_timeout_s: float = Field(default=10.0, gt=0)
    """Timeout of one provider request, in seconds."""
    max_attempts: int = Field(default=4, ge=1)
    """Attempts per send, retryable failures only."""
    max_workers: int = Field(default=4, ge=1, le=32)
    """Publish tasks running at once in one flow."""
    batches_per_task: int = Field(default=50, ge=1)
    single_rows_per_task: int = Field(default=5000, ge=1)
    """Ledger rows per publish task of a channel whose row is one recipient (SMS: one Twilio
    request each): a task of 50 would be a Prefect task per 50 messages. 5,000 take about
    30 s at the measured rate (docs/channels.md), well inside ``sending_lease_s``."""
    """Ledger rows (batches of up to 1,000 recipients) per publish task."""
    send_concurrency: int = Field(default=4, ge=1, le=64)
    """Requests in flight inside one publish task (a bounded thread pool)."""
    sending_lease_s: float = Field(default=300.0, ge=0)
    """A row ``sending`` for longer than this is treated as left by a dead sender and
    reconciled by the next flow run; keep it above max_attempts x (timeout + backoff)."""
    email_rate_per_s: float | None = Field(default=None, gt=0)
    """SendGrid requests per second for this process (None: no limit of ours)."""
    x_rate_per_s: float | None = Field(default=1.0, gt=0)
    """X posts per second for this process, after a burst of ``delivery.rate_limits.BURST``."""
    retry_base_delay_s: float = Field(default=0.2, ge=0)
    """First retry delay (doubled each time, with jitter), in seconds."""
    retry_max_delay_s: float = Field(default=30.0, ge=0)
    """Longest retry delay, in seconds."""

    # listening: spikes, alerts and automatic replies
    dashboard_url: str | None = None
    """Public base URL of the dashboard, e.g. ``https://crisis.example.com``: spike alerts link
    to its reactions page, with the incident's reference. Unset: alerts carry no link."""
    alert_email_to: str | None = None
    """The PR lead's address for spike alerts, sent through SendGrid (unset: no alert email)."""
    alert_slack_webhook_url: SecretStr | None = None
    """A Slack incoming webhook for spike alerts (Block Kit); the URL is a secret."""
    alert_teams_webhook_url: SecretStr | None = None
    """A Microsoft Teams incoming webhook (or Workflows URL) for spike alerts (Adaptive Card);
    the URL is a secret."""
    reply_max_per_run: int = Field(default=20, ge=0)
    """Automatic replies one watcher pass (``reactions watch``) sends at most: the per-process
    cap; the rest wait for the next pass."""
    reply_max_per_incident: int = Field(default=200, ge=0)
    """Automatic replies one incident gets at most, ever (0: none)."""
    reply_max_age_minutes: int = Field(default=60, ge=1)
    """Automatic replies answer reactions at most this old: an older question, unanswered,
    is for a person (and the watcher never rescans a whole incident's history)."""
    watch_interval_s: float = Field(default=30.0, gt=0)
    """Seconds between two passes of ``reactions watch`` (without ``--once``)."""
    # listening: X mentions and replies
    x_poll_interval_s: float = Field(default=60.0, ge=1)
    """Seconds between two polls of X mentions and conversation replies; a 429 or a spent
    rate budget waits for X's reset instead (never sooner)."""
    x_poll_max_pages: int = Field(default=5, ge=1, le=100)
    """Pages of up to 100 posts read per query in one poll; a larger backlog is read on by the
    next polls from the stored cursor, so one poll stays short."""
    x_listen_after_resolved_h: float = Field(default=72.0, ge=0)
    """Replies to an incident's posts are still read this many hours after it is resolved
    (thanks, "still not working"), then its conversations are left alone."""

    # listening: receivers
    sendgrid_webhook_public_key: str | None = None
    """SendGrid's Event Webhook verification key (base64 DER, Mail Settings > Signed Event
    Webhook Requests). Unset: ``POST /v1/sendgrid/events`` refuses every request (401)."""
    webhook_max_age_s: int = Field(default=300, ge=1)
    """Replay window of signed webhooks: a signature timestamp older (or further in the
    future) than this many seconds is refused."""
    inbound_parse_user: str | None = None
    """User of the HTTP basic auth in the Inbound Parse URL (``https://user:pass@host/v1/
    sendgrid/inbound``). Unset: ``POST /v1/sendgrid/inbound`` refuses every request (401)."""
    inbound_parse_password: SecretStr | None = None
    """Password of the Inbound Parse basic auth."""
    reply_domain: str | None = None
    """The Inbound Parse domain our emails' Reply-To names (``replies+<batch key>@<domain>``):
    a reply is linked to the exact batch it answers. Unset: no Reply-To is set."""
    zendesk_webhook_secret: SecretStr | None = None
    """Zendesk webhook signing secret (``X-Zendesk-Webhook-Signature``). Unset: refused."""
    freshdesk_webhook_secret: SecretStr | None = None
    """Our HMAC-SHA256 secret for Freshdesk automations: ``X-Crisiscomms-Signature`` is the
    base64 HMAC of timestamp + body (docs/listening.md). Unset: refused."""
    csat_secret: SecretStr | None = None
    """Key of the HMAC that signs each recipient's satisfaction-rating link. Unset: no rating
    link in emails and ``/v1/csat/...`` answers 404."""
    listen_url: str | None = None
    """Public base URL of the listening app (``crisiscomms listen``), e.g.
    ``https://listen.example.com``: rating links point to ``<url>/v1/csat/<token>``."""
    listen_max_body_bytes: int = Field(default=2_000_000, ge=1024)
    """Largest JSON webhook body accepted (events, tickets, ratings); larger: 413 unread."""
    inbound_max_body_bytes: int = Field(default=31_457_280, ge=1024)
    """Largest Inbound Parse body accepted (SendGrid's limit is 30 MB with attachments)."""

    # listening: triage
    triage_model_path: Path | None = None
    """A sentiment model written by ``crisiscomms reactions train`` to use instead of the one
    shipped in the package (relative to the workspace); ``reactions train`` writes here too
    (default: data_dir/triage/sentiment_model.npz)."""

    # dashboard: sign-in and roles
    dashboard_users_path: Path | None = None
    """The dashboard's users file (``crisiscomms users add``: ids, roles, Argon2 password
    hashes; mode 600), relative to the workspace (default: data_dir/dashboard_users.toml)."""
    dashboard_session_minutes: int = Field(default=720, ge=5, le=7 * 24 * 60)
    """How long a dashboard sign-in lasts before the password is asked again."""

    # dashboard: support, the executive overview and fast aggregates
    dashboard_overview_refresh_s: int = Field(default=30, ge=5, le=3600)
    """How often the executive overview refreshes itself (``st.fragment``'s ``run_every``), in
    seconds; also how long its aggregates stay cached, so every viewer's refresh inside that
    time reads the cache, not the database."""

    # events in: the intake API (``crisiscomms api``) and the flows it starts
    intake_sources_path: Path | None = None
    """The intake sources file (``crisiscomms sources add``: each sending system, its kind and
    keys; mode 600), relative to the workspace (default: data_dir/intake_sources.toml)."""
    intake_url: str = "http://127.0.0.1:8050"
    """The public base URL of the intake API (``crisiscomms api``), as the senders reach it
    (behind its reverse proxy, e.g. ``https://events.example.com``): ``crisiscomms sources
    add`` prints ``<intake_url>/v1/events/<kind>/<name>`` for the sender to post to."""
    intake_max_body_bytes: int = Field(default=1_000_000, ge=1024)
    """Largest event body accepted; larger: 413, refused from Content-Length before it is
    read, or cut at the cap while it streams."""
    intake_replay_window_s: int = Field(default=300, ge=1)
    """A Standard Webhooks timestamp older or further ahead than this is refused (401), and a
    request id seen within it is a replay (401)."""
    intake_rate_per_s: float = Field(default=50.0, gt=0)
    """Requests per second a source may send, unless its entry in the sources file says
    otherwise; beyond: 429 with Retry-After."""
    intake_dispatch: Literal["prefect", "inline"] = "prefect"
    """How an accepted event runs its playbook: ``prefect``: a run of the ``intake_deployment``
    on a Prefect server, served by a worker (``crisiscomms worker``); ``inline``: the same flow
    in a thread of the API process (the embedded default and drills without a server)."""
    intake_deployment: str = "handle-event/crisiscomms-intake"
    """The deployment an accepted event starts (``flows/deploy.py`` makes it)."""
    approval_reminder_s: float = Field(default=900.0, ge=1)
    """A flow waiting for an approval reminds the PR lead (``alert_email_to``, Slack, Teams)
    after this many seconds, then again each time as long again passes; it keeps waiting and
    never sends without the approval."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Arguments, then the environment, then the workspace's ``.env`` (``_env_file=None``:
        none), never a ``.env`` of the current directory."""
        env_file = getattr(dotenv_settings, "env_file", None)
        return (init_settings, env_settings,
                _WorkspaceSource(settings_cls, init_settings, env_settings, env_file),
                file_secret_settings)

    @field_validator(
        "sendgrid_api_key",
        "x_bearer_token",
        "x_consumer_key",
        "x_consumer_secret",
        "x_access_token",
        "x_access_token_secret",
        "alert_slack_webhook_url",
        "alert_teams_webhook_url",
        "mastodon_access_token",
        "bluesky_app_password",
        "slack_webhook_url",
        "slack_bot_token",
        "teams_webhook_url",
        "webhook_secret",
        "inbound_parse_password",
        "zendesk_webhook_secret",
        "freshdesk_webhook_secret",
        "csat_secret",
        "subscriptions_form_secret",
        "twilio_auth_token",
    )
    @classmethod
    def _refuse_placeholder(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and value.get_secret_value().strip().lower() in PLACEHOLDER_SECRETS:
            raise ValueError("is a placeholder; set a real secret or leave it unset")
        return value

    @field_validator("sms_quiet_hours")
    @classmethod
    def _quiet_hours(cls, value: str | None) -> str | None:
        """``HH:MM-HH:MM`` (24-hour clock, two different times), or empty for none."""
        if value is None or not value.strip():
            return None
        match = re.fullmatch(r"([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-3]):([0-5]\d)",
                             value.strip())
        if match is None:
            raise ValueError(f"{value!r} is not HH:MM-HH:MM (e.g. 21:00-08:00)")
        if match.group(1, 2) == match.group(3, 4):
            raise ValueError(f"{value!r} starts and ends at the same time")
        return value.strip()

    @model_validator(mode="after")
    def _refuse_plain_http_providers(self) -> Self:
        """A provider URL receives our API key or token (a webhook URL is itself the secret):
        ``https://`` only, except to this machine. Checked after the fields, so the message
        names the setting, never the secret value."""
        for name in PROVIDER_URLS:
            value = getattr(self, name)
            url = value.get_secret_value() if isinstance(value, SecretStr) else value
            if url is None:
                continue
            problem = provider_url_problem(url, secret=isinstance(value, SecretStr))
            if problem is not None:
                raise ValueError(f"{ENV_PREFIX}{name.upper()} {problem}")
        return self

    @model_validator(mode="after")
    def _anchor_paths(self) -> Self:
        """Relative paths are relative to the workspace root; outside a workspace, refuse."""
        if self.workspace is not None:
            self.workspace = self.workspace.expanduser().resolve()
        for name in WORKSPACE_PATHS:
            value: Path | None = getattr(self, name)
            if value is None or value.is_absolute():
                continue
            if self.workspace is None:
                raise NotInWorkspaceError(not_in_workspace_message())
            setattr(self, name, self.workspace / value)
        return self

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'crisiscomms.db'}"

    @property
    def resolved_status_page_dir(self) -> Path:
        return self.status_page_dir or self.data_dir / "status_page"

    @property
    def resolved_dashboard_users_path(self) -> Path:
        return self.dashboard_users_path or self.data_dir / "dashboard_users.toml"

    @property
    def resolved_intake_sources_path(self) -> Path:
        return self.intake_sources_path or self.data_dir / "intake_sources.toml"

    @property
    def resolved_keys_dir(self) -> Path:
        """Where this user's private signing key lives (``keys_dir``, else the user's own
        configuration folder)."""
        if self.keys_dir is not None:
            return self.keys_dir.expanduser().absolute()
        config = os.environ.get("XDG_CONFIG_HOME") or ""
        base = Path(config) if Path(config).is_absolute() else Path.home() / ".config"
        return base / "crisiscomms" / "keys"


class _WorkspaceSource(PydanticBaseSettingsSource):
    """The workspace root (named by argument or environment, else found from the current
    directory up) and the values of its ``.env``."""

    def __init__(self, settings_cls: type[BaseSettings], init: PydanticBaseSettingsSource,
                 env: PydanticBaseSettingsSource, env_file: Any) -> None:
        super().__init__(settings_cls)
        self._init, self._env, self._env_file = init, env, env_file

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # everything is read at once in __call__

    def __call__(self) -> dict[str, Any]:
        explicit = self._init().get("workspace") or self._env().get("workspace")
        root = find_workspace(explicit)
        if root is None:
            return {}
        values: dict[str, Any] = {}
        if self._env_file is not None:
            files = self._env_file if isinstance(self._env_file, list | tuple) else [
                self._env_file]
            paths = [path if Path(path).is_absolute() else root / path for path in files]
            values.update(DotEnvSettingsSource(self.settings_cls, env_file=paths)())
        values.pop("workspace", None)  # a .env does not move its own workspace
        values["workspace"] = root
        return values


def env_example() -> str:
    """A ``.env.example`` listing every ``CRISISCOMMS_*`` setting, commented out, with what it
    is and its default (secrets empty)."""
    lines = [
        "# crisiscomms settings for this workspace. Copy this file to .env (git ignores it) and",
        "# uncomment what you need; the environment (CRISISCOMMS_*) overrides .env. Relative",
        "# paths are relative to this workspace. Placeholder secrets (changeme...) are refused.",
    ]
    for name, field in Settings.model_fields.items():
        if name == "workspace":  # a workspace's .env is found through its workspace
            continue
        default = field.default
        if default is None:
            shown = ""
        elif isinstance(default, Path):
            shown = default.as_posix()
        else:
            shown = str(default)
        description = " ".join((field.description or "").replace("``", "").split())
        wrapped = textwrap.wrap(description, 94, break_on_hyphens=False)
        lines += ["", *(f"# {line}" for line in wrapped), f"# {ENV_PREFIX}{name.upper()}={shown}"]
    return "\n".join(lines) + "\n"
