"""FactSheet: the validated facts of one incident, the single source every message renders from."""

from __future__ import annotations

import hashlib
import json
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Literal
from zoneinfo import ZoneInfo

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from crisiscomms.core.errors import FactsError
from crisiscomms.core.text import check_url, clean_text, printable, scrub

Severity = Literal["minor", "major", "critical"]
ProductType = Literal["consumer_product", "food", "drug", "medical_device", "cosmetic"]
RecallClass = Literal["I", "II", "III"]
RemedyKind = Literal["refund", "repair", "replace"]
ComponentStatus = Literal[
    "operational", "degraded_performance", "partial_outage", "major_outage", "under_maintenance"
]
"""What an incident does to its components on the status page (Statuspage's value set)."""


def _check_url(value: str | None) -> str | None:
    return None if value is None else check_url(value)


def clean_facts(data: Any, path: str = "") -> tuple[Any, list[FactsError]]:
    """Raw facts with :func:`crisiscomms.core.text.clean_text` applied to every string in them
    (dictionary keys too, at any depth: recall, breach, extra, translations, lists), and a
    FactsError naming the fact path (``recall.hazard``, ``translations.es.impact``,
    ``recall.colors.1``) for each refused one. A refused string is replaced by its scrubbed
    form in the data returned, so the facts' other problems can be found in the same pass."""
    problems: list[FactsError] = []

    def text(value: str, where: str) -> str:
        try:
            return clean_text(value)
        except ValueError as exc:
            reason = str(exc)
            problems.append(FactsError(f"{where or 'facts'}: {reason}", field=where or "facts",
                                       reason=reason))
            return scrub(value)

    def walk(value: Any, where: str) -> Any:
        if isinstance(value, str):
            return text(value, where)
        if isinstance(value, dict):
            return {(text(k, f"{where}.{printable(k)}".lstrip(".")) if isinstance(k, str) else k):
                    walk(v, f"{where}.{printable(str(k))}".lstrip(".")) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return type(value)(walk(v, f"{where}.{i}".lstrip("."))
                               for i, v in enumerate(value))
        return value

    return walk(data, path), problems


def _refused(problems: list[FactsError]) -> FactsError:
    return FactsError(f"invalid facts: {'; '.join(map(str, problems))}", problems=problems)


class _Facts(BaseModel):
    """A model of facts: every string in it obeys the text rule (:mod:`crisiscomms.core.text`)
    before any other check; a refused character raises FactsError naming the fact."""

    @model_validator(mode="before")
    @classmethod
    def _clean_text(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        cleaned, problems = clean_facts(data)
        if problems:
            raise _refused(problems)
        return cleaned


class RecallFacts(_Facts):
    """What a recall notice must carry (US CPSC 16 CFR 1115.27(n), FDA 21 CFR 7.49).

    Every field is required except those marked optional; ``recall_class`` is the FDA class
    (CPSC recalls have none). Text a reader reads (description, hazard, instructions, colours,
    injuries) can be translated per locale through ``FactSheet.translations``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)

    product_type: ProductType
    recall_class: RecallClass | None = None
    product_name: str = Field(min_length=1, max_length=80)
    product_description: str = Field(min_length=1, max_length=600)
    model_numbers: tuple[str, ...] = ()
    lot_numbers: tuple[str, ...] = ()
    serial_numbers: tuple[str, ...] = ()
    colors: tuple[str, ...] = Field(min_length=1)
    photo_url: str
    units_affected: int = Field(ge=1)
    hazard: str = Field(min_length=1, max_length=400)
    injuries_reported: int = Field(ge=0)
    incidents_reported: int = Field(ge=0)
    injuries: str = Field(min_length=1, max_length=400)
    manufacturer: str = Field(min_length=1, max_length=120)
    importer: str | None = Field(default=None, max_length=120)
    retailers: tuple[str, ...] = Field(min_length=1)
    country_of_manufacture: str = Field(pattern=r"^[A-Z]{2}$")
    manufactured_from: date
    manufactured_to: date
    sold_from: date
    sold_to: date
    price_min: Decimal = Field(ge=0)
    price_max: Decimal = Field(ge=0)
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    remedy: tuple[RemedyKind, ...] = Field(min_length=1)
    consumer_action: str = Field(min_length=1, max_length=600)
    toll_free_phone: str = Field(min_length=5, max_length=40)
    website: str
    contact_hours: str | None = Field(default=None, max_length=160)
    media_contact_name: str = Field(min_length=1, max_length=120)
    media_contact_email: str = Field(pattern=r"^[^@\s]+@[^@\s]+$", max_length=254)
    media_contact_phone: str = Field(min_length=5, max_length=40)

    @field_validator("photo_url", "website")
    @classmethod
    def _urls(cls, value: str) -> str:
        _check_url(value)
        return value

    @model_validator(mode="after")
    def _consistent(self) -> RecallFacts:
        if not (self.model_numbers or self.lot_numbers or self.serial_numbers):
            raise ValueError("needs model, lot or serial numbers so people can find the product")
        if self.manufactured_from > self.manufactured_to:
            raise ValueError("manufactured_from is after manufactured_to")
        if self.sold_from > self.sold_to:
            raise ValueError("sold_from is after sold_to")
        if self.price_min > self.price_max:
            raise ValueError("price_min is over price_max")
        if self.product_type in ("food", "drug", "medical_device", "cosmetic") and \
                self.recall_class is None:
            raise ValueError(
                f"a {self.product_type} recall needs its FDA recall_class (I, II or III)")
        return self

    @property
    def urgent(self) -> bool:
        """FDA 21 CFR 7.49(c)(2): class I and II food and drug recalls are marked URGENT."""
        return self.product_type in ("food", "drug") and self.recall_class in ("I", "II")


class BreachFacts(_Facts):
    """What a personal-data breach notice must say (GDPR art. 34(2) with art. 33(3)(b)-(d);
    US state notices): what happened and when, what information, what we do, what you can do,
    how to reach us (and the data protection officer)."""

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)

    occurred_from: datetime
    occurred_to: datetime | None = None
    discovered_at: datetime
    what_happened: str = Field(min_length=1, max_length=800)
    data_categories: tuple[str, ...] = Field(min_length=1)
    data_not_involved: str | None = Field(default=None, max_length=400)
    people_affected: int = Field(ge=1)
    actions_taken: str = Field(min_length=1, max_length=800)
    recommended_actions: str = Field(min_length=1, max_length=800)
    likely_consequences: str = Field(min_length=1, max_length=600)
    authority_notified: str | None = Field(default=None, max_length=300)
    dpo_contact: str = Field(min_length=3, max_length=254)

    @field_validator("occurred_from", "occurred_to", "discovered_at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("needs a time zone offset, e.g. 2026-11-23T09:40:00+00:00")
        return value


LOCALIZABLE_FACTS = frozenset({
    "title", "impact", "cause", "remedy", "workaround",
    "recall.product_description", "recall.colors", "recall.hazard", "recall.injuries",
    "recall.consumer_action", "recall.contact_hours",
    "breach.what_happened", "breach.data_categories", "breach.data_not_involved",
    "breach.actions_taken", "breach.recommended_actions", "breach.likely_consequences",
    "breach.authority_notified",
})
"""Facts a reader reads as prose: each locale of a playbook needs them in its language
(``translations``); names, numbers, codes, dates and URLs are the same everywhere."""


class FactSheet(_Facts):
    """What is true about the incident right now. Every field a template may use is declared."""

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)

    incident_ref: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    organization: str = Field(min_length=1, max_length=200)
    title: str = Field(min_length=1, max_length=200)
    severity: Severity
    components: tuple[str, ...] = ()
    component_status: ComponentStatus | None = None
    """The status page status of ``components`` while the incident is open; default from the
    severity (minor → degraded_performance, major → partial_outage, critical → major_outage)."""
    impact: str | None = None
    cause: str | None = None
    remedy: str | None = None
    workaround: str | None = None
    started_at: datetime
    next_update_at: datetime | None = None
    resolved_at: datetime | None = None
    contact_url: str | None = None
    contact_phone: str | None = None
    status_page_url: str | None = None
    time_zone: str = "UTC"
    extra: dict[str, str] = Field(default_factory=dict)
    recall: RecallFacts | None = None
    breach: BreachFacts | None = None
    translations: dict[str, dict[str, str | tuple[str, ...]]] = Field(default_factory=dict)
    """Per locale, the prose facts in that language: ``{"es": {"impact": "...",
    "recall.hazard": "...", "extra.prevention": "..."}}``."""

    @field_validator("translations")
    @classmethod
    def _translatable(
        cls, value: dict[str, dict[str, str | tuple[str, ...]]]
    ) -> dict[str, dict[str, str | tuple[str, ...]]]:
        for locale, entries in value.items():
            for path in entries:
                if path not in LOCALIZABLE_FACTS and not path.startswith("extra."):
                    raise ValueError(f"{locale}: {path!r} is not a translatable fact")
        return value

    @field_validator("started_at", "next_update_at", "resolved_at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("needs a time zone offset, e.g. 2026-11-23T09:40:00+00:00")
        return value

    @field_validator("time_zone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        # checked here, not first at render time: an unknown zone would otherwise stop the
        # render with ZoneInfo's own error, after the facts were accepted
        try:
            ZoneInfo(value)
        except (ValueError, KeyError):  # ZoneInfoNotFoundError is a KeyError
            raise ValueError(f"unknown time zone {value!r}; use an IANA name such as "
                             "Europe/Berlin or UTC") from None
        return value

    @field_validator("contact_url", "status_page_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        return _check_url(value)

    def content_hash(self) -> str:
        """SHA-256 over the canonical JSON of the facts (absent recall/breach/translations are
        left out, so a fact sheet without them hashes as it always did)."""
        data = self.model_dump(mode="json")
        for key in ("recall", "breach", "translations"):
            if not data.get(key):
                data.pop(key, None)
        canonical = json.dumps(data, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    def value(self, path: str) -> Any:
        """A fact by dotted path (``impact``, ``recall.hazard``, ``extra.prevention``)."""
        head, _, rest = path.partition(".")
        if head == "extra":
            return self.extra.get(rest)
        value: Any = getattr(self, head, None)
        if rest:
            value = getattr(value, rest, None) if value is not None else None
        return value

    def missing(self, required: list[str]) -> list[str]:
        """The required facts that are absent or empty."""
        return [name for name in required if self.value(name) in (None, "", ())]

    def localized(self, chain: list[str]) -> dict[str, Any]:
        """The facts as template data, prose overlaid by the first translation in ``chain``
        (``["es-MX", "es"]``) that has it."""
        data = self.model_dump()
        for path in {p for loc in chain for p in self.translations.get(loc, {})}:
            for loc in chain:
                if path in self.translations.get(loc, {}):
                    head, _, rest = path.partition(".")
                    target = data[head] if rest else data
                    if target is not None:
                        target[rest or head] = self.translations[loc][path]
                    break
        return data


def build_fact_sheet(data: dict[str, Any], *, base: FactSheet | None = None) -> FactSheet:
    """Validate raw facts (merged over ``base`` for an update) into a FactSheet.

    FactsError gathers every problem, each naming its fact (``field``): the text rule's
    refusals (:func:`clean_facts`) and the model's own checks, in one pass."""
    merged: dict[str, Any] = base.model_dump() if base is not None else {}
    merged.update({k: v for k, v in data.items() if v is not None})
    if base is not None and isinstance(data.get("translations"), dict):
        # an update translates what it adds (the cause), not everything again: per locale,
        # its entries join the base's
        joined = {loc: dict(entries) for loc, entries in base.translations.items()}
        for loc, entries in data["translations"].items():
            joined.setdefault(loc, {}).update(entries if isinstance(entries, dict) else {})
        merged["translations"] = joined
    cleaned, problems = clean_facts(merged)
    try:
        sheet = FactSheet.model_validate(cleaned)
    except ValidationError as exc:
        for err in exc.errors():
            path = ".".join(str(p) for p in err["loc"]) or "facts"
            problems.append(FactsError(f"{path}: {err['msg']}", field=path, reason=err["msg"]))
    if problems:
        raise _refused(problems) from None
    return sheet
