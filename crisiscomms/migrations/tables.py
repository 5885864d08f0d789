"""Every table of the engine, gathered for Alembic (``env.py``): each domain owns its models."""

from __future__ import annotations

from crisiscomms.audience import models as audience
from crisiscomms.delivery import models as delivery
from crisiscomms.identity import models as identity
from crisiscomms.incident import models as incident
from crisiscomms.intake import models as intake
from crisiscomms.reactions import models as reactions

TABLE_MODULES = (incident, delivery, audience, identity, reactions, intake)
