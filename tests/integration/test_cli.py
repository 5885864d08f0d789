"""The CLI as a user runs it: exit codes, one-line errors, the drill's JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from repo_paths import PROJECT_ROOT
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select
from typer.testing import CliRunner

from crisiscomms.cli import app
from crisiscomms.core.settings import Settings
from crisiscomms.delivery.ledger import channel_counts
from crisiscomms.incident.models import Incident
from crisiscomms.testing.emulators import EmulatorPair, Faults

pytestmark = pytest.mark.integration
runner = CliRunner()
LANGUAGES = len(yaml.safe_load((PROJECT_ROOT / "playbooks" / "outage.yaml").read_text())
                ["locales"])  # broadcast channels: one message per language


@pytest.fixture
def cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CRISISCOMMS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("CRISISCOMMS_DATABASE_URL", raising=False)
    monkeypatch.delenv("CRISISCOMMS_MODE", raising=False)
    return tmp_path


def facts_file(tmp_path: Path, **over: object) -> Path:
    raw = yaml.safe_load((PROJECT_ROOT / "playbooks" / "outage.yaml").read_text())
    facts = {**raw["drill_facts"], **over}
    path = tmp_path / "facts.yaml"
    path.write_text(yaml.safe_dump({k: v for k, v in facts.items() if v is not None}))
    return path


@pytest.mark.parametrize(("args", "message"), [
    (["trigger", "nope"], "unknown playbook 'nope' (available: "),
    (["drill", "nope", "--recipients", "1"], "unknown playbook 'nope'"),
    (["approve", "NO-SUCH", "--stage", "update", "--by", "dana"], "unknown incident 'NO-SUCH'"),
    (["templates", "approve", "outage/nope.j2", "--by", "dana"], "no template outage/nope.j2"),
])
def test_bad_commands_exit_2_with_one_clear_line(cli_env: Path, args: list[str],
                                                 message: str) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())


def test_trigger_refuses_missing_fact_and_writes_nothing(cli_env: Path) -> None:
    path = facts_file(cli_env, next_update_at=None)
    result = runner.invoke(app, ["trigger", "outage", "--facts", str(path)])
    assert result.exit_code == 2
    assert "missing required facts: next_update_at" in " ".join(result.output.split())
    listing = runner.invoke(app, ["incidents"])
    assert "DRILL-OUTAGE-001" not in listing.output


def test_production_trigger_refuses_provisional_templates_and_sends_nothing(
        cli_env: Path) -> None:
    """The example workspace's approvals are provisional (an engineering review): production,
    the default, refuses the auto-sent acknowledgement too, naming every template."""
    path = facts_file(cli_env)
    result = runner.invoke(app, ["trigger", "outage", "--facts", str(path)])
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    assert "production sends only final ones" in text and "nothing was stored or sent" in text
    assert "outage/acknowledge/email.subject.en.j2: only provisionally approved" in text
    assert "outage/acknowledge/x.text.ja.j2: only provisionally approved" in text
    assert "DRILL-OUTAGE-001" not in runner.invoke(app, ["incidents"]).output


def test_trigger_unapproved_stage_waits_for_approval(cli_env: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRISISCOMMS_MODE", "drill")  # the example's approvals are provisional
    path = facts_file(cli_env)
    first = runner.invoke(app, ["trigger", "outage", "--facts", str(path), "--no-publish"])
    assert first.exit_code == 0, first.output
    update = runner.invoke(app, ["trigger", "outage", "--incident", "DRILL-OUTAGE-001",
                                 "--stage", "update"])
    assert update.exit_code == 0, update.output
    assert "awaiting approval: crisiscomms approve DRILL-OUTAGE-001 --stage update" in \
        " ".join(update.output.split())


@pytest.mark.usefixtures("prefect_server")
def test_drill_prints_one_json_object(cli_env: Path) -> None:
    """A drill runs in drill mode, so the example workspace's provisional approvals (refused
    in production) may be used."""
    out = cli_env / "out"
    result = runner.invoke(app, ["drill", "outage", "--recipients", "25", "--json",
                                 "--out", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert set(report) >= {"incident_id", "playbook", "channels", "emulator_received",
                           "duplicates", "elapsed_s"}
    assert report["channels"]["email"] == {"planned": 75, "sent": 75, "failed": 0}
    posts = 3 * len(yaml.safe_load((PROJECT_ROOT / "playbooks" / "outage.yaml").read_text())
                    ["locales"])  # three stages, one broadcast message per language
    broadcasts = ("x", "mastodon", "bluesky", "slack", "teams", "webhook")
    for channel in ("status_page", *broadcasts):
        assert report["channels"][channel] == {"planned": posts, "sent": posts, "failed": 0}
    # the drill's subscribers have mobile numbers: one SMS each per stage too
    assert report["channels"]["sms"] == {"planned": 75, "sent": 75, "failed": 0}
    assert report["emulator_received"] == {"email": 75, **dict.fromkeys(broadcasts, posts),
                                           "sms": 75}
    assert report["duplicates"] == 0
    lines = (out / "sent.jsonl").read_text().splitlines()
    assert len(lines) == 75 + len(broadcasts) * posts + 75
    assert (out / "status_page" / "api" / "v2" / "summary.json").is_file()


@pytest.mark.usefixtures("prefect_server")
def test_failures_then_one_command_retry(workspace: tuple[object, object],
                                         emulators: EmulatorPair, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """X is down during the acknowledgement: `failures` names it with the provider's answer,
    `retry --channel x` sends the post once when X is back, and email is not sent twice."""
    from crisiscomms.cli import common

    monkeypatch.setattr(common.out, "_width", 200)  # a wide terminal: one table row per line
    emulators.x.set_faults(Faults(error_rate=1.0, error_statuses=(503,)))
    path = facts_file(tmp_path, incident_ref="CLI-RETRY-1")
    first = runner.invoke(app, ["trigger", "outage", "--facts", str(path)])
    assert first.exit_code != 2, first.output
    assert emulators.x.stats()["accepted_messages"] == 0
    listing = runner.invoke(app, ["failures", "CLI-RETRY-1"])
    text = " ".join(listing.output.split())
    assert listing.exit_code == 0, listing.output
    assert "CLI-RETRY-1" in text and "503" in text and "crisiscomms retry" in text
    emulators.x.set_faults(Faults())
    again = runner.invoke(app, ["retry", "CLI-RETRY-1", "--channel", "x"])
    assert again.exit_code == 0, again.output
    posts = len(yaml.safe_load((PROJECT_ROOT / "playbooks" / "outage.yaml").read_text())
                ["locales"])  # one post per language
    assert f"re-queued {posts} recipient(s) of CLI-RETRY-1 on x" in " ".join(again.output.split())
    assert emulators.x.stats()["accepted_messages"] == posts
    assert emulators.sendgrid.stats()["duplicates"] == 0
    assert emulators.sendgrid.stats()["recipients"] == 1000
    after = runner.invoke(app, ["failures", "CLI-RETRY-1"])
    assert "CLI-RETRY-1" not in after.output


def test_db_status_and_upgrade(cli_env: Path) -> None:
    before = runner.invoke(app, ["db", "status"])
    assert before.exit_code == 0, before.output
    assert "no revision" in before.output and "behind" in " ".join(before.output.split())
    assert runner.invoke(app, ["db", "upgrade"]).exit_code == 0
    after = runner.invoke(app, ["db", "status"])
    assert "up to date" in " ".join(after.output.split())


@pytest.mark.usefixtures("prefect_server")
def test_status_page_first_for_real(workspace: tuple[Settings, Engine], emulators: EmulatorPair,
                                    tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The status page cannot be written (its directory's parent is a regular file: root
    can't either): the acknowledgement sends nothing on X, support or email, says why and
    exits non-zero; once the page can be written, `resume --now` sends everything, once."""
    settings, engine = workspace
    blocker = tmp_path / "blocker"
    blocker.write_text("a regular file where the status page's parent directory should be\n")
    monkeypatch.setenv("CRISISCOMMS_STATUS_PAGE_DIR", str(blocker / "status_page"))
    path = facts_file(tmp_path, incident_ref="CLI-FIRST-1")

    first = runner.invoke(app, ["trigger", "outage", "--facts", str(path)])
    text = " ".join(first.output.split())
    assert first.exit_code == 1, first.output
    assert ("status page failed for stage acknowledge: status page not published: ENOTDIR"
            in text), text
    assert "nothing else was sent" in text
    assert "crisiscomms resume CLI-FIRST-1" in text
    assert emulators.x.stats()["accepted_messages"] == 0
    assert emulators.sendgrid.stats()["recipients"] == 0
    assert not (settings.data_dir / "support" / "CLI-FIRST-1").exists()
    with Session(engine) as session:
        counts = channel_counts(session)
    assert counts.pop("status_page")["failed"] == LANGUAGES
    assert {c: n["planned"] for c, n in counts.items()} == {
        "email": 1000, **dict.fromkeys(("x", "support", "mastodon", "bluesky", "slack", "teams",
                                        "webhook"), LANGUAGES)}  # all held behind the page

    blocker.unlink()  # the page can be written again
    resumed = runner.invoke(app, ["resume", "CLI-FIRST-1", "--now"])
    assert resumed.exit_code == 0, resumed.output
    assert "status page of stage acknowledge re-queued" in " ".join(resumed.output.split())
    assert emulators.x.stats()["accepted_messages"] == LANGUAGES
    sent = emulators.sendgrid.stats()
    assert (sent["recipients"], sent["duplicates"]) == (1000, 0)
    assert (settings.data_dir / "support" / "CLI-FIRST-1" / "current.en.md").is_file()
    assert (blocker / "status_page" / "site" / "api" / "v2" / "summary.json").is_file()
    with Session(engine) as session:
        assert all(set(n) == {"sent"} or all(v == 0 for k, v in n.items() if k != "sent")
                   for n in channel_counts(session).values())

    again = runner.invoke(app, ["resume", "CLI-FIRST-1", "--now"])  # nothing twice
    assert again.exit_code == 0, again.output
    assert emulators.x.stats()["accepted_messages"] == LANGUAGES
    assert emulators.sendgrid.stats()["recipients"] == 1000


# -- hostile facts: refused at the door, naming the fact; nothing sent anywhere ------------------


def json_facts(tmp_path: Path, name: str = "facts.json", **over: object) -> Path:
    """The outage drill facts as a JSON file (tab-indented, non-ASCII as \\u escapes: valid
    JSON that YAML misreads), with ``over`` on top."""
    raw = yaml.safe_load((PROJECT_ROOT / "playbooks" / "outage.yaml").read_text())
    path = tmp_path / name
    path.write_text(json.dumps({**raw["drill_facts"], **over}, indent="\t"), encoding="utf-8")
    return path


def nothing_sent(settings: Settings, engine: Engine, emulators: EmulatorPair, ref: str) -> None:
    assert emulators.sendgrid.stats()["recipients"] == 0
    assert emulators.x.stats()["accepted_messages"] == 0
    assert not (settings.resolved_status_page_dir / "state.json").exists()
    assert not list((settings.data_dir / "support").glob("**/*"))
    with Session(engine) as session:
        assert session.exec(select(Incident).where(col(Incident.ref) == ref)).first() is None


@pytest.mark.parametrize(("over", "field", "shown"), [
    ({"title": "API down \x1b[31mNOW\x1b[0m\x07"}, "title", "U+001B (ESC)"),
    ({"impact": "Requests fail\x08\x08"}, "impact", "U+0008 (BS)"),
    ({"cause": "A \u202eliamg.evil\u202c change"}, "cause", "U+202E (RIGHT-TO-LEFT OVERRIDE)"),
    ({"contact_url": 'https://example.com/"><script>alert(1)</script>'}, "contact_url",
     "without quotes, brackets"),
    ({"extra": {"prevention": "\x00"}}, "extra.prevention", "U+0000 (NUL)"),
])
def test_trigger_refuses_hostile_facts_naming_the_fact_and_sends_nothing(
        workspace: tuple[Settings, Engine], emulators: EmulatorPair, tmp_path: Path,
        over: dict[str, object], field: str, shown: str) -> None:
    settings, engine = workspace
    path = json_facts(tmp_path, incident_ref="CLI-HOSTILE-1", **over)
    result = runner.invoke(app, ["trigger", "outage", "--facts", str(path)])
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    assert f"invalid facts: {field}: " in text and shown in text and "Traceback" not in text
    nothing_sent(settings, engine, emulators, "CLI-HOSTILE-1")


def test_a_json_facts_file_is_read_as_json(workspace: tuple[Settings, Engine],
                                          tmp_path: Path) -> None:
    """Tab-indented JSON with an emoji as a surrogate-pair escape: YAML refused the tabs with a
    position error (and read the escape as two lone surrogates). Zero-width characters in a
    fact are stripped."""
    _, engine = workspace
    path = json_facts(tmp_path, incident_ref="CLI-JSON-1", title="API down 🚨\u200b for some")
    assert "\t" in path.read_text() and "\\ud83d\\udea8" in path.read_text()
    result = runner.invoke(app, ["trigger", "outage", "--facts", str(path), "--no-publish"])
    assert result.exit_code == 0, result.output
    with Session(engine) as session:
        incident = session.exec(select(Incident).where(col(Incident.ref) == "CLI-JSON-1")).one()
    assert incident.title == "API down 🚨 for some"
    other = tmp_path / "facts.txt"
    other.write_text("title: x")
    refused = runner.invoke(app, ["trigger", "outage", "--facts", str(other)])
    assert refused.exit_code == 2
    assert "name it .json, .yaml or .yml" in " ".join(refused.output.split())


@pytest.mark.usefixtures("prefect_server")
def test_an_esc_in_the_acknowledgement_is_refused_and_the_next_incident_publishes(
        workspace: tuple[Settings, Engine], emulators: EmulatorPair, tmp_path: Path) -> None:
    """The hole: an acknowledgement holding ESC and BEL reached the status page, and every
    later build failed while the other channels carried on. Now it is refused at trigger
    (exit 2, naming the fact, nothing on any channel) and the next incident publishes
    everywhere, status page first."""
    settings, engine = workspace
    bad = json_facts(tmp_path, "bad.json", incident_ref="CLI-ESC-1",
                     title="API down \x1b[31m(copied from a terminal)\x1b[0m\x07")
    refused = runner.invoke(app, ["trigger", "outage", "--facts", str(bad)])
    assert refused.exit_code == 2, refused.output
    assert "invalid facts: title: holds a control character U+001B (ESC)" in \
        " ".join(refused.output.split())
    nothing_sent(settings, engine, emulators, "CLI-ESC-1")

    good = json_facts(tmp_path, "good.json", incident_ref="CLI-ESC-2",
                      title="API down (copied from a terminal)")
    published = runner.invoke(app, ["trigger", "outage", "--facts", str(good)])
    assert published.exit_code == 0, published.output
    site = settings.resolved_status_page_dir / "site"
    incidents = json.loads((site / "api" / "v2" / "incidents.json").read_text())["incidents"]
    assert [i["name"] for i in incidents] == ["API down (copied from a terminal)"]
    assert emulators.x.stats()["accepted_messages"] > 0
    assert emulators.sendgrid.stats()["recipients"] == 1000
    rebuilt = runner.invoke(app, ["statuspage", "build"])
    assert rebuilt.exit_code == 0, rebuilt.output
