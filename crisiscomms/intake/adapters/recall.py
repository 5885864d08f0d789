"""A recall feed in JSON (our documented shape), Standard Webhooks signed.

A product-safety system, a quality team's tool or a bridge from a regulator's feed (CPSC,
FDA enforcement reports, the EU Safety Gate) posts the recalls it knows::

    {"recalls": [{"recall_id": "CPSC-27-041", "status": "announced", "title": "...",
                  "announced_at": "2026-11-30T15:00:00Z", "url": "https://...",
                  "regions": ["US", "CA"], "product": {...RecallFacts fields...}}]}

``product`` holds the fields of a recall notice (:class:`~crisiscomms.incident.facts.RecallFacts`:
product, model/lot numbers, units, hazard, remedy, dates...), each optional here: a feed knows
the product and the hazard, the playbook's rules add what is ours (the toll-free number, the
media contact), and the complete notice is checked when the stage is triggered. Each recall is
one signal whose ``facts`` are the fact sheet's ``recall`` section (and ``title``); its dedup
key is the recall id and a hash of its content, so a changed recall (more units, a new lot) is
a new signal of the same group (the recall id): an update of the same incident.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, ClassVar, Literal

from pydantic import AwareDatetime, BaseModel, Field, field_validator

from crisiscomms.core.text import check_url
from crisiscomms.incident.facts import RecallFacts
from crisiscomms.intake.adapters.base import (
    Line,
    Payload,
    Text,
    examples,
    facts_text_rule,
    parse_json,
    partial_model,
)
from crisiscomms.intake.adapters.events import EventsAdapter
from crisiscomms.intake.contract import Signal, Source, SourceKind
from crisiscomms.intake.signatures import verify_standard

RecallProduct = partial_model(
    RecallFacts, "RecallProduct",
    doc="The recall notice's fields (RecallFacts), each optional: the playbook's rules and "
        "the fact sheet complete and check them.")

EXAMPLE: dict[str, Any] = {"recalls": [{
    "recall_id": "CPSC-27-041",
    "status": "announced",
    "title": "Recall: Brewmaster 2 kettles can overheat",
    "announced_at": "2026-11-30T15:00:00Z",
    "url": "https://www.example.com/recalls/brewmaster-2",
    "regions": ["US", "CA"],
    "product": {
        "product_type": "consumer_product",
        "product_name": "Brewmaster 2 electric kettle",
        "product_description": "1.7 litre stainless steel kettle with a blue LED ring",
        "model_numbers": ["BM2-170", "BM2-170X"],
        "colors": ["steel", "black"],
        "photo_url": "https://www.example.com/img/bm2.jpg",
        "units_affected": 48200,
        "hazard": "The base can overheat and melt, posing a fire and burn hazard.",
        "injuries_reported": 2, "incidents_reported": 17,
        "injuries": "Two minor burns to the hand.",
        "manufacturer": "Example Appliances Ltd", "retailers": ["Shopmart", "example.com"],
        "country_of_manufacture": "CN",
        "manufactured_from": "2026-01-05", "manufactured_to": "2026-08-30",
        "sold_from": "2026-02-01", "sold_to": "2026-11-28",
        "price_min": "39.99", "price_max": "54.99", "currency": "USD",
        "remedy": ["refund"],
        "consumer_action": "Stop using the kettle, unplug it and contact us for a refund.",
    },
}]}


class RecallIn(Payload):
    """One recall of the feed."""

    recall_id: Line = Field(min_length=1, max_length=120,
                            description="The feed's id of the recall (its group).")
    status: Literal["announced", "updated", "closed"] = Field(
        description="announced/updated: firing; closed (the recall is over): resolved.")
    title: Text = Field(min_length=1, max_length=200,
                        description="The feed's headline; becomes the fact sheet's title.")
    announced_at: AwareDatetime
    url: Line | None = Field(default=None, max_length=2048,
                             description="The recall's page at the feed (for the PR lead).")
    regions: list[Line] = Field(default_factory=list, max_length=64,
                                description="Where it applies (ISO 3166 codes).")
    product: RecallProduct = Field(default_factory=RecallProduct)  # type: ignore[valid-type]

    @field_validator("product", mode="before")
    @classmethod
    def _text_rule(cls, value: Any) -> Any:
        return facts_text_rule(value)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return None if value is None else check_url(value)


class RecallFeed(Payload):
    """A recall feed: the recalls it reports, new or changed."""

    model_config = examples(EXAMPLE)

    recalls: list[RecallIn] = Field(min_length=1, max_length=500)


def content_hash(recall: RecallIn) -> str:
    """A short SHA-256 of the recall's canonical JSON: a changed recall is a new signal."""
    canonical = json.dumps(recall.model_dump(mode="json", exclude_none=True), sort_keys=True,
                           separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


class RecallAdapter:
    """``POST /v1/events/recall/{source}``: a recall feed, Standard Webhooks signed."""

    kind: ClassVar[SourceKind] = SourceKind.recall
    auth_headers: ClassVar[tuple[tuple[str, str], ...]] = EventsAdapter.auth_headers
    path: ClassVar[str] = "/v1/events/recall/{source}"
    payload_model: ClassVar[type[BaseModel]] = RecallFeed

    def verify(self, source: Source, headers: Mapping[str, str], body: bytes, *,
               now: float, window_s: int) -> str | None:
        return verify_standard(headers, body, source.secrets, now=now, window_s=window_s)

    def parse(self, source: Source, body: bytes, *, received_at: datetime) -> Sequence[Signal]:
        feed = parse_json(RecallFeed, body)
        signals = []
        for recall in feed.recalls:
            product: BaseModel = recall.product
            facts = product.model_dump(mode="json", exclude_unset=True)
            labels = {"recall_id": recall.recall_id, "status": recall.status,
                      "regions": ",".join(recall.regions)}
            for label, name in (("product", "product_name"), ("product_type", "product_type"),
                                ("recall_class", "recall_class")):
                if facts.get(name):
                    labels[label] = str(facts[name])
            signals.append(Signal(
                source=source.name, kind=self.kind,
                dedup_key=f"{recall.recall_id}:{content_hash(recall)}",
                group_key=f"recall:{recall.recall_id}",
                status="resolved" if recall.status == "closed" else "firing",
                labels=labels, started_at=recall.announced_at,
                ended_at=received_at if recall.status == "closed" else None,
                summary=recall.title, facts={"title": recall.title, "recall": facts}))
        return signals
