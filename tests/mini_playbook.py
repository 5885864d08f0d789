"""The smallest playbook the rendering tests need: one stage on X and email, a personal field."""

from __future__ import annotations

from crisiscomms.playbook.loader import Playbook

PLAYBOOK = Playbook.model_validate({
    "name": "pb",
    "title": "Test",
    "recipient_fields": {"first_name": {"fallback": "there"}},
    "stages": [{"id": "s", "title": "S", "incident_status": "investigating",
                "channels": ["x", "email"]}],
})
STAGE = PLAYBOOK.stages[0]
