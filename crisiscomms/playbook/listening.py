"""A playbook's ``listening:`` section: how reactions to its messages are triaged and answered.

```yaml
listening:
  cues:                       # per locale, per needs-a-human reason: phrases (case-folded)
    en: {safety: [burn, fire, injur], legal: [lawyer, sue], press: [journalist], complaint: []}
    ja: {safety: [火傷, 発火]}
  vip: ["@bigcustomer", "cto@bigcustomer.example"]   # authors always flagged (handles, addresses,
                                                     # or @domain.example for a whole domain)
  replies:                    # pre-approved automatic replies (templates/<playbook>/_replies/)
    - id: eta
      cues: {en: ["when will", "how long"], de: ["wann"]}
  spikes: {window_minutes: 5, baseline_windows: 12, volume_ratio: 3.0, min_volume: 20,
           negative_share: 0.6}
```
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

NEEDS_HUMAN_REASONS = ("complaint", "safety", "legal", "press", "vip")
"""Why a reaction needs a person (the ``reasons`` of triage start with one of these)."""


class ReplyRule(BaseModel):
    """A question the playbook answers automatically with a pre-approved reply."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    cues: dict[str, tuple[str, ...]] = Field(
        default_factory=dict, description="Per locale, phrases that ask this question.")


class SpikePolicy(BaseModel):
    """When reaction turns into a storm, per channel and locale."""

    model_config = ConfigDict(extra="forbid")

    window_minutes: int = Field(default=5, ge=1, le=1440)
    baseline_windows: int = Field(default=12, ge=1, le=1000)
    volume_ratio: float = Field(default=3.0, gt=1)
    """A window with this many times the baseline's volume is a spike..."""
    min_volume: int = Field(default=20, ge=1)
    """...if it holds at least this many reactions."""
    negative_share: float = Field(default=0.6, gt=0, le=1)
    """A window (of at least ``min_volume``) this negative is a spike whatever its volume."""


class Listening(BaseModel):
    model_config = ConfigDict(extra="forbid")

    cues: dict[str, dict[str, tuple[str, ...]]] = Field(default_factory=dict)
    """Per locale, per reason (``complaint``, ``safety``, ``legal``, ``press``), phrases."""
    vip: tuple[str, ...] = ()
    replies: tuple[ReplyRule, ...] = ()
    spikes: SpikePolicy = Field(default_factory=SpikePolicy)
