"""Where settings may come from, and where a secret may be sent: a ``.env`` is read from the
workspace root only; a provider URL is https:// unless it points at this machine."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from crisiscomms.cli import app
from crisiscomms.core.settings import PROVIDER_URLS, Settings

KEY = "SG.live-key-4f9c2a7e1b"
HOOK = "http://hooks.example.net/services/T0/B0/hook-secret-9d1e"


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "ws"
    (root / "sub").mkdir(parents=True)
    (root / "crisiscomms.toml").write_text("[workspace]\nformat = 1\n")
    for name in ("workspace", "sendgrid_api_key", *PROVIDER_URLS):
        monkeypatch.delenv(f"CRISISCOMMS_{name.upper()}", raising=False)
    monkeypatch.chdir(root / "sub")
    return root


def test_a_dotenv_in_the_current_directory_is_not_read(workspace: Path) -> None:
    (workspace / "sub" / ".env").write_text(
        f"CRISISCOMMS_SENDGRID_BASE_URL=https://collector.example.net\n"
        f"CRISISCOMMS_SENDGRID_API_KEY={KEY}\n")
    settings = Settings()
    assert settings.workspace == workspace.resolve()
    assert settings.sendgrid_base_url == "https://api.sendgrid.com"
    assert settings.sendgrid_api_key is None


def test_the_workspace_dotenv_is_read(workspace: Path) -> None:
    (workspace / ".env").write_text("CRISISCOMMS_SENDGRID_BASE_URL=https://sg.example.net\n")
    assert Settings().sendgrid_base_url == "https://sg.example.net"


def test_cli_refuses_a_plain_http_provider_url_naming_it_never_the_key(workspace: Path) -> None:
    (workspace / ".env").write_text(f"CRISISCOMMS_SENDGRID_BASE_URL=http://collector.example.net\n"
                                    f"CRISISCOMMS_SENDGRID_API_KEY={KEY}\n"
                                    f"CRISISCOMMS_ALERT_SLACK_WEBHOOK_URL={HOOK}\n")
    (workspace / "r.csv").write_text("email\nann@example.com\n")
    result = CliRunner().invoke(app, ["recipients", "import", str(workspace / "r.csv")])
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    assert "CRISISCOMMS_SENDGRID_BASE_URL is http:// to 'http://collector.example.net'" in text
    assert "use https://" in text
    assert KEY not in result.output and "hook-secret" not in result.output
    assert not (workspace / "data").exists()  # refused before anything was created


@pytest.mark.parametrize("url", ["http://127.0.0.1:8025", "http://localhost:9",
                                 "http://[::1]:9", "http://127.1.2.3", "https://api.example"])
def test_loopback_emulators_and_https_are_accepted(workspace: Path, url: str) -> None:
    settings = Settings(_env_file=None, sendgrid_base_url=url, x_base_url=url,  # type: ignore[call-arg]
                        alert_teams_webhook_url=url)  # type: ignore[arg-type]
    assert settings.x_base_url == url


@pytest.mark.parametrize(("field", "url", "reason"), [
    ("x_base_url", "http://api.twitter.com", "is http:// to"),
    ("x_base_url", "http://127.0.0.1.evil.example", "is http:// to"),
    ("sendgrid_base_url", "file:///etc/passwd", "must be an https:// URL"),
    ("sendgrid_base_url", "https://user:pw@api.sendgrid.com", "must not carry a user"),
    ("alert_teams_webhook_url", HOOK, "is http:// to a host that is not this machine"),
])
def test_provider_urls_that_would_leak_a_secret_are_refused(workspace: Path, field: str,
                                                           url: str, reason: str) -> None:
    with pytest.raises(ValidationError) as caught:
        Settings(_env_file=None, **{field: url})  # type: ignore[call-arg]
    from crisiscomms.cli.common import validation_message

    message = validation_message(caught.value)
    assert f"CRISISCOMMS_{field.upper()} {reason}" in message
    assert "hook-secret" not in message
