"""The Maintenance page, run by AppTest: a window announced and listed, started and completed
(each published on the status page and audited), refusals beside their field with the CLI's
message and nothing written, every other role refused."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from dashboard_apptest import open_page, texts
from sqlalchemy.engine import Engine
from sqlmodel import Session, select
from streamlit.testing.v1 import AppTest
from typer.testing import CliRunner

from crisiscomms.channels.status_page import build_status_page
from crisiscomms.core.clock import utcnow
from crisiscomms.core.settings import Settings
from crisiscomms.dashboard.plain_text import plain
from crisiscomms.identity.models import AuditEvent
from crisiscomms.identity.roles import Role
from crisiscomms.statuspage.maintenances import maintenances

pytestmark = pytest.mark.integration
PAGE = "maintenance_page.py"


def announce(app: AppTest, *, name: str, components: str, start: str, end: str,
             zone: str = "UTC", body: str = "") -> AppTest:
    app.text_input(key="mnt_name").input(name)
    app.text_area(key="mnt_components").input(components)
    app.text_input(key="mnt_start").input(start)
    app.selectbox(key="mnt_start_zone").set_value(zone)
    app.text_input(key="mnt_end").input(end)
    app.selectbox(key="mnt_end_zone").set_value(zone)
    app.text_area(key="mnt_body").input(body)
    return next(b for b in app.button if b.label == "Announce").click().run()


def audits(engine: Engine) -> list[tuple[str, str]]:
    with Session(engine) as session:
        return [(a.actor, a.action) for a in session.exec(select(AuditEvent))]


def test_pr_lead_announces_lists_starts_and_completes_a_window(dashboard_db: Engine) -> None:
    tomorrow = (utcnow() + timedelta(days=1)).strftime("%Y-%m-%d")
    app = open_page(PAGE, Role.pr_lead, user_id="pat").run()
    assert not app.exception, [e.value for e in app.exception]
    assert "No maintenance scheduled." in texts(app)
    announce(app, name="Database upgrade", components="API\nDashboard",
             start=f"{tomorrow} 02:00", end=f"{tomorrow} 04:00", zone="Europe/Berlin",
             body="Sign-ins may be slow for a few minutes.")
    assert not app.exception and not app.error, [e.value for e in app.error]
    assert plain("The status page is published.") in texts(app)
    page = build_status_page(Settings())
    [row] = maintenances(page)
    assert (row.name, row.components, row.status) == ("Database upgrade", ("API", "Dashboard"),
                                                      "scheduled")
    berlin = datetime.strptime(f"{tomorrow} 02:00", "%Y-%m-%d %H:%M").replace(
        tzinfo=ZoneInfo("Europe/Berlin"))
    assert row.starts == berlin  # read in the picked zone
    assert row.ends - row.starts == timedelta(hours=2)
    site = (page.site_path / "index.html").read_text(encoding="utf-8")
    assert "Database upgrade" in site
    listed = app.table[0].value.to_dict("records")
    assert [(r["name"], r["status"]) for r in listed] == [("Database upgrade", "scheduled")]

    next(b for b in app.button if b.label == "Start now").click().run()
    assert not app.error, [e.value for e in app.error]
    assert maintenances(page)[0].status == "in_progress"
    assert app.table[0].value.to_dict("records")[0]["status"] == "in_progress"
    next(b for b in app.button if b.label == "Complete now").click().run()
    assert not app.error, [e.value for e in app.error]
    assert maintenances(page)[0].status == "completed"
    assert not [b for b in app.button if b.label in ("Start now", "Complete now")]
    assert [a for a in audits(dashboard_db) if a[1].startswith("maintenance.")] == [
        ("pat", "maintenance.scheduled"), ("pat", "maintenance.started"),
        ("pat", "maintenance.completed")]


@pytest.mark.parametrize(("start", "end", "components", "field", "cli_message"), [
    ("soon", "2099-01-01 04:00", "API", "start", "--start 'soon' is not an ISO 8601 time"),
    ("2099-01-01 04:00", "2099-01-01 02:00", "API", "end",
     "a maintenance must end after it starts"),
    ("2099-01-01 02:00", "2099-01-01 04:00", "", "components",
     "name at least one component under maintenance"),
], ids=["bad-start", "end-before-start", "no-components"])
def test_a_refused_window_shows_the_cli_message_beside_its_field_and_writes_nothing(
        dashboard_db: Engine, start: str, end: str, components: str, field: str,
        cli_message: str) -> None:
    from crisiscomms.cli import app as cli

    def iso(text: str) -> str:
        return text.replace(" ", "T") + "+00:00" if text[:2] == "20" else text

    result = CliRunner().invoke(cli, ["maintenance", "schedule", "--name", "Upgrade",
                                      "--components", components or ",", "--start",
                                      iso(start), "--end", iso(end)])
    assert result.exit_code == 2 and cli_message in " ".join(result.output.split())

    app = open_page(PAGE, Role.pr_lead).run()
    announce(app, name="Upgrade", components=components, start=start, end=end)
    assert not app.exception, [e.value for e in app.exception]
    message = cli_message.replace("--start", "start")
    assert str(app.error[0].value) == plain(f"Refused, nothing was changed: {message}")
    assert [str(e.value) for e in app.error[1:]] == [plain(message)]
    flat = list(app.main)  # every element, depth first
    keys = [str(getattr(e, "key", "") or "") for e in flat]
    at_field = keys.index(f"mnt_{field}")
    at_error = next(i for i, e in enumerate(flat) if e.type == "error" and i > 0
                    and str(e.value) == plain(message))
    between = [k for k in keys[at_field + 1:at_error] if k.startswith("mnt_")]
    assert at_field < at_error and all(k.endswith("_zone") for k in between)  # beside it
    assert not maintenances(build_status_page(Settings()))
    assert not [a for a in audits(dashboard_db) if a[1].startswith("maintenance.")]


@pytest.mark.parametrize("role", [Role.approver, Role.support, Role.executive, Role.admin],
                         ids=str)
def test_every_other_role_is_refused(dashboard_db: Engine, role: Role) -> None:
    app = open_page(PAGE, role).run()
    assert [e.value for e in app.error] == [f"Your roles ({role.value}) do not allow this page."]
    assert not app.button and not app.text_input and not app.table
