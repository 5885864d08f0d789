"""Every page of the dashboard, who may open it, and in which section of the menu it sits.

One row per page: the file (in this folder), its title and icon, its URL path and the
:class:`~crisiscomms.identity.roles.Permission` it asks for. ``app.py`` shows a signed-in person
the pages their roles allow, in this order (the first one is their home page); each page
checks the same permission itself with ``session.require``, so a typed URL shows nothing more.
To add a page: write ``<name>_page.py`` starting with ``user = require(Permission.X)``, add its row
here, and cover it for every role in ``tests/integration/test_dashboard_roles.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

from crisiscomms.identity.roles import Permission
from crisiscomms.identity.users import DashboardUser


@dataclass(frozen=True)
class PageSpec:
    file: str
    title: str
    icon: str
    url_path: str
    permission: Permission
    section: str


RUN = "Run the incident"
READ = "Read"
ADMIN = "Admin"

PAGES: tuple[PageSpec, ...] = (
    PageSpec("incidents_page.py", "Incidents", ":material/emergency:", "incidents",
             Permission.view_incidents, RUN),
    PageSpec("trigger_page.py", "Trigger", ":material/campaign:", "trigger",
             Permission.trigger, RUN),
    PageSpec("approvals_page.py", "Approvals", ":material/approval:", "approvals",
             Permission.preview, RUN),
    PageSpec("maintenance_page.py", "Maintenance", ":material/construction:", "maintenance",
             Permission.schedule_maintenance, RUN),
    PageSpec("failures_page.py", "Failures", ":material/error:", "failures",
             Permission.view_failures, RUN),
    PageSpec("reactions_page.py", "Reactions", ":material/forum:", "reactions",
             Permission.view_reactions, RUN),
    PageSpec("support_page.py", "Holding statements", ":material/support_agent:", "support",
             Permission.view_support, READ),
    PageSpec("executive_page.py", "Overview", ":material/monitoring:", "overview",
             Permission.view_executive, READ),
    PageSpec("audit_page.py", "Audit trail", ":material/policy:", "audit",
             Permission.view_audit, ADMIN),
)


def pages_for(user: DashboardUser) -> list[PageSpec]:
    """The pages ``user`` may open, in menu order."""
    return [page for page in PAGES if user.may(page.permission)]
