"""Settings: the only place that reads the environment (prefix ``CRISISCOMMS_``)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent.parent

PLACEHOLDER_SECRETS = frozenset({"changeme", "change-me", "changethis", "secret", "xxx", "todo"})


class Settings(BaseSettings):
    """Where data lives and how to reach each channel.

    Secrets are ``SecretStr`` so they never show in logs, reprs or rendered pages. A placeholder
    secret (``changeme``...) is refused: better to fail at start-up than at 3 a.m.
    """

    model_config = SettingsConfigDict(env_prefix="CRISISCOMMS_", env_file=".env", extra="ignore")

    data_dir: Path = Field(default=PROJECT_ROOT / "data")
    database_url: str | None = None
    playbooks_dir: Path = PROJECT_ROOT / "playbooks"
    templates_dir: Path = PROJECT_ROOT / "templates"
    status_page_dir: Path | None = None
    status_page_url: str = "http://127.0.0.1:8030/"
    subscriptions_url: str | None = None
    """Public base URL of the subscriptions app (``crisiscomms subscriptions``), e.g.
    ``https://status-api.example.com``: the status page's form posts to ``<url>/v1/subscribe``
    and emails link to ``<url>/v1/unsubscribe/<token>``. Unset: no form on the page."""
    organization: str = "Example Corp"
    operator: str = "pr-lead"

    sendgrid_api_key: SecretStr | None = None
    sendgrid_base_url: str = "https://api.sendgrid.com"
    email_from: str = "status@example.com"
    email_from_name: str = "Example Corp Status"
    email_batch_size: int = Field(default=1000, ge=1, le=1000)
    sendgrid_transport: Literal["sdk", "httpx"] = "httpx"
    """``httpx``: pooled connections and orjson bodies (the fan-out hot path, measured in
    docs/scaling.md); ``sdk``: the official SendGrid SDK, one connection per request."""

    x_bearer_token: SecretStr | None = None
    x_consumer_key: SecretStr | None = None
    x_consumer_secret: SecretStr | None = None
    x_access_token: SecretStr | None = None
    x_access_token_secret: SecretStr | None = None
    x_base_url: str = "https://api.twitter.com"

    http_timeout_s: float = Field(default=10.0, gt=0)
    max_attempts: int = Field(default=4, ge=1)
    max_workers: int = Field(default=4, ge=1, le=32)
    batches_per_task: int = Field(default=50, ge=1)
    send_concurrency: int = Field(default=4, ge=1, le=64)
    """Requests in flight inside one publish task (a bounded thread pool)."""
    sending_lease_s: float = Field(default=300.0, ge=0)
    """A row ``sending`` for longer than this is treated as left by a dead sender and
    reconciled by the next flow run; keep it above max_attempts x (timeout + backoff)."""
    email_rate_per_s: float | None = Field(default=None, gt=0)
    """SendGrid requests per second for this process (None: no limit of ours)."""
    x_rate_per_s: float | None = Field(default=1.0, gt=0)
    """X posts per second for this process, after a burst of ``publishing.BURST``."""
    retry_base_delay_s: float = Field(default=0.2, ge=0)
    retry_max_delay_s: float = Field(default=30.0, ge=0)

    @field_validator(
        "sendgrid_api_key",
        "x_bearer_token",
        "x_consumer_key",
        "x_consumer_secret",
        "x_access_token",
        "x_access_token_secret",
    )
    @classmethod
    def _refuse_placeholder(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and value.get_secret_value().strip().lower() in PLACEHOLDER_SECRETS:
            raise ValueError("is a placeholder; set a real secret or leave it unset")
        return value

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'crisiscomms.db'}"

    @property
    def resolved_status_page_dir(self) -> Path:
        return self.status_page_dir or self.data_dir / "status_page"
