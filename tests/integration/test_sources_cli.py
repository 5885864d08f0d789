"""``crisiscomms sources`` as an operator runs it (the installed command, a real process): a key
is printed once, on one line, and nowhere else; the file is mode 600; what to paste into each
sender names the right URL."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest
from repo_paths import PROJECT_ROOT

pytestmark = pytest.mark.integration

CRISISCOMMS = Path(sys.executable).with_name("crisiscomms")
Run = Callable[..., subprocess.CompletedProcess[str]]
PD_SECRET = "pd3-subscription-secret-Zq3v8Kd0pR7mWn2xLc5t"


@pytest.fixture
def cli(tmp_path: Path) -> Run:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRISISCOMMS_")}
    env.update(CRISISCOMMS_WORKSPACE=str(PROJECT_ROOT), CRISISCOMMS_DATA_DIR=str(tmp_path),
               CRISISCOMMS_INTAKE_URL="https://events.example.com", COLUMNS="200")

    def run(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(CRISISCOMMS), "sources", *args], env=env, input=stdin,
                              capture_output=True, text=True, timeout=120, cwd=tmp_path)

    return run


def keys_in(path: Path) -> list[str]:
    data = tomllib.loads(path.read_text())
    return [k["secret"] for s in data["sources"].values() for k in s["keys"]]


def test_add_rotate_list_remove(cli: Run, tmp_path: Path) -> None:
    run = cli
    path = tmp_path / "intake_sources.toml"
    added = run("add", "prom-eu", "--kind", "alertmanager", "--rate-per-s", "5")
    assert added.returncode == 0, added.stderr
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    (key,) = keys_in(path)
    assert [line for line in added.stdout.splitlines() if key in line] == [
        f"key (shown once; paste it into the sender now): {key}"]
    assert "URL: https://events.example.com/v1/events/alertmanager/prom-eu" in added.stdout
    assert "credentials_file:" in added.stdout

    rotated = run("rotate", "prom-eu", "--grace-hours", "2")
    assert rotated.returncode == 0, rotated.stderr
    new, old = keys_in(path)
    assert old == key
    assert [line for line in rotated.stdout.splitlines() if new in line] == [
        f"new key (shown once; paste it into the sender now): {new}"]
    assert key not in rotated.stdout + rotated.stderr
    assert "the previous key stays valid until" in rotated.stdout

    ours = run("add", "checkout-probe", "--kind", "events")
    assert "POST https://events.example.com/v1/events " in ours.stdout
    assert "webhook-signature: v1," in ours.stdout

    listed = run("list")
    assert listed.returncode == 0, listed.stderr
    assert "prom-eu" in listed.stdout and "/v1/events/alertmanager/prom-eu" in listed.stdout
    assert "5 " in listed.stdout and "50 (default)" in listed.stdout
    for secret in keys_in(path):
        assert secret not in listed.stdout + listed.stderr

    removed = run("remove", "prom-eu")
    assert removed.returncode == 0, removed.stderr
    assert "prom-eu" not in run("list").stdout


def test_pagerduty_secret_comes_from_stdin_and_is_never_printed(cli: Run,
                                                                tmp_path: Path) -> None:
    run = cli
    first = run("add", "pd", "--kind", "pagerduty")
    assert first.returncode == 2
    assert "Webhook URL:  https://events.example.com/v1/events/pagerduty/pd" in first.stdout
    assert "--secret-stdin" in first.stderr
    assert not (tmp_path / "intake_sources.toml").exists()
    added = run("add", "pd", "--kind", "pagerduty", "--secret-stdin", stdin=PD_SECRET + "\n")
    assert added.returncode == 0, added.stderr
    assert keys_in(tmp_path / "intake_sources.toml") == [PD_SECRET]
    assert PD_SECRET not in added.stdout + added.stderr


def test_grafana_setup_names_the_signature_headers(cli: Run) -> None:
    added = cli("add", "grafana-prod", "--kind", "grafana")
    assert added.returncode == 0, added.stderr
    for words in ("URL:          https://events.example.com/v1/events/grafana/grafana-prod",
                  "X-Grafana-Alerting-Signature", "X-Grafana-Alerting-Timestamp"):
        assert words in added.stdout


@pytest.mark.parametrize(("args", "stdin", "words"), [
    (("add", "Prom", "--kind", "alertmanager"), "", "source name"),
    (("add", "x", "--kind", "nagios"), "", "kind: one of"),
    (("add", "x", "--kind", "events", "--secret-stdin"), "changeme\n", "placeholder"),
    (("rotate", "nope"), "", "no source named nope"),
    (("remove", "nope"), "", "no source named nope"),
])
def test_mistakes_exit_2_with_one_line(cli: Run, args: tuple[str, ...], stdin: str,
                                       words: str) -> None:
    result = cli(*args, stdin=stdin)
    assert result.returncode == 2, result.stdout
    assert words in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_world_readable_file_is_refused(cli: Run, tmp_path: Path) -> None:
    run = cli
    assert run("add", "a", "--kind", "events").returncode == 0
    os.chmod(tmp_path / "intake_sources.toml", 0o644)
    listed = run("list")
    assert listed.returncode == 2
    assert "chmod 600" in listed.stderr
