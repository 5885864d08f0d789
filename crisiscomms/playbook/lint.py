"""``crisiscomms lint``: every playbook and template checked before a crisis needs them.

For each playbook: it loads; every stage × channel × locale has every part (and the same thread
parts and short variants in every locale); Q&A exists in every locale; every template is approved
as it is, and so is every template they load (``include``, ``import``, ``from``, ``extends``, at
any depth: a partial's problem names it in ``template``). Then every message is rendered, exactly
as a trigger would (with the approval lock), with three fact sets:

- ``drill``: the playbook's own drill facts;
- ``longest``: the drill facts with every text at its longest plausible length (schema maxima,
  full-width product and organisation names, long model/lot lists) and recipients with
  200-character full-width names, so a limit that holds for the drill but not for a real
  product is caught now;
- ``urgent`` (recall playbooks): a class I food recall, whose email subject must say URGENT.

Rendering applies the same checks as a trigger: no undefined variable (StrictUndefined: a
template using an undeclared fact or recipient field fails), channel limits per part with the
short variant when over (never truncation), the canonical facts each channel must carry
(``must_carry``), the notice's headline and urgent words. Personal email is checked again after
substituting the longest recipient values and every time zone's times.

The ``intake:`` rules (events that start the playbook on their own) are checked the same way:
for each rule, the facts it makes of a plausible firing signal (and then of its resolution)
pass the stage's required facts and render in every channel and locale, and the components
it maps to exist on the workspace's status page when the page knows any.

Each problem names playbook, message (stage), channel, locale and field.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Collection, Mapping
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from crisiscomms.core.errors import ApprovalError, CrisisCommsError, FactsError, PlaybookError
from crisiscomms.delivery.contract import Channel
from crisiscomms.incident.facts import FactSheet, build_fact_sheet
from crisiscomms.intake.contract import Signal, SourceKind
from crisiscomms.intake.rules import stage_request
from crisiscomms.playbook.intake_rules import IntakeRule
from crisiscomms.playbook.loader import Playbook, Stage, available_playbooks, load_playbook
from crisiscomms.playbook.notices import fact_problems
from crisiscomms.render.approvals import ApprovalLock, TemplateStatus
from crisiscomms.render.environment import (
    StageRenderer,
    part_problems,
    recipient_substitutions,
    time_tags,
    time_values,
)
from crisiscomms.render.loader import read_template, referenced_templates, template_key

REPLIES_DIR = "_replies"
"""A playbook's automatic reply templates (``reactions/replies.py``): not a stage."""
_REPLY = re.compile(r"^(?P<rule>[a-z][a-z0-9_]*)\.(?P<channel>[a-z_]+)\.(?P<part>[a-z0-9_]+)\."
                    r"(?P<locale>[A-Za-z-]+)\.j2$")
_TEMPLATE = re.compile(r"^(?P<channel>[a-z_]+)\.(?P<part>[a-z0-9_]+)\.(?P<locale>[A-Za-z-]+)\.j2$")

LONGEST_TIME_ZONES = ("Pacific/Kiritimati", "America/St_Johns", "Asia/Kathmandu", "UTC",
                      "America/Argentina/ComodRivadavia")
"""Zones whose names or abbreviations are long or odd (+14, -0230, +0545...)."""

FULL_WIDTH = "Ｗ"
"""A full-width letter: two weighted characters on X, three bytes in UTF-8."""

PLAUSIBLE = {"incident_ref": 40, "organization": 40, "components": 24}
"""Lengths of facts whose schema maximum is not a plausible value (a 64-character reference)."""

FULL_WIDTH_FACTS = frozenset({"organization", "recall.product_name"})
LONG_LIST = 3
LONG_ITEM = 40


@dataclass(frozen=True)
class Problem:
    playbook: str
    text: str
    message: str | None = None
    channel: str | None = None
    locale: str | None = None
    field: str | None = None
    facts: str | None = None
    template: str | None = None
    """The template at fault: a message's own, or a partial it includes, imports or extends."""

    def __str__(self) -> str:
        where = [f"playbook {self.playbook}"]
        for label, value in (("message", self.message), ("channel", self.channel),
                             ("locale", self.locale), ("field", self.field)):
            if value:
                where.append(f"{label} {value}")
        suffix = f" [facts: {self.facts}]" if self.facts else ""
        return f"{', '.join(where)}: {self.text}{suffix}"

    def as_dict(self) -> dict[str, str]:
        """The problem for machines (``crisiscomms lint --json``): the fields that are set."""
        return {k: v for k, v in asdict(self).items() if v is not None}


def _long_text(length: int, *, full_width: bool = False) -> str:
    if full_width:
        return FULL_WIDTH * length
    word = "Longestplausible "
    return (word * (length // len(word) + 1))[:length].strip() or "x"


def _pad(value: str, length: int) -> str:
    """``value`` padded to ``length`` (its own words first: a headline keeps its 'Recall')."""
    return (value + " " + _long_text(length))[:length].rstrip() if len(value) < length else value


def _path_max(path: str) -> int:
    from crisiscomms.incident.facts import BreachFacts, RecallFacts

    head, _, rest = path.partition(".")
    model, field = {"recall": (RecallFacts, rest), "breach": (BreachFacts, rest)}.get(
        head, (FactSheet, head))
    return _max_length(model, field) or 300


def _max_length(model: Any, field: str) -> int | None:
    info = model.model_fields.get(field)
    if info is None:
        return None
    for meta in info.metadata:
        value = getattr(meta, "max_length", None)
        if isinstance(value, int):
            return value
    return None


def _lengthen(path: str, value: Any, model: Any, field: str) -> Any:
    if isinstance(value, str) and not value.startswith(("http://", "https://")):
        limit = PLAUSIBLE.get(path) or _max_length(model, field)
        if limit is None or "@" in value or field in ("time_zone", "currency",
                                                      "country_of_manufacture"):
            return value
        if path == "incident_ref":
            return ("LONG-" + "9" * limit)[:limit]
        if field.endswith("phone"):
            return value
        if path in FULL_WIDTH_FACTS:
            return _long_text(limit, full_width=True)
        return _pad(value, limit)
    if isinstance(value, list | tuple) and value and all(isinstance(v, str) for v in value):
        if field in ("remedy",):
            return value
        item = PLAUSIBLE.get(path, LONG_ITEM)
        return [_long_text(item - 2) + f" {i}" for i in range(LONG_LIST)]
    return value


def longest_facts(drill: Mapping[str, Any]) -> dict[str, Any]:
    """The drill facts with every text at its longest plausible length."""
    from crisiscomms.incident.facts import BreachFacts, RecallFacts

    out: dict[str, Any] = {}
    for key, value in drill.items():
        if key in ("recall", "breach") and isinstance(value, Mapping):
            model = RecallFacts if key == "recall" else BreachFacts
            out[key] = {k: _lengthen(f"{key}.{k}", v, model, k) for k, v in value.items()}
        elif key == "extra" and isinstance(value, Mapping):
            out[key] = {k: _long_text(300) for k in value}
        elif key == "translations" and isinstance(value, Mapping):
            out[key] = {loc: {p: (_pad(v, _path_max(p)) if isinstance(v, str) else
                                  [_long_text(LONG_ITEM)] * LONG_LIST)
                              for p, v in entries.items()} for loc, entries in value.items()}
        else:
            out[key] = _lengthen(key, value, FactSheet, key)
    return out


def urgent_facts(drill: Mapping[str, Any]) -> dict[str, Any] | None:
    recall = drill.get("recall")
    if not isinstance(recall, Mapping):
        return None
    return {**drill, "recall": {**recall, "product_type": "food", "recall_class": "I"}}


LONGEST_RECIPIENT = {
    "first_name": FULL_WIDTH * 200, "name": FULL_WIDTH * 200,
    "email": ("x" * 64 + "@" + "d" * 63 + "." + "e" * 63 + "." + "f" * 61)[:254],
    "plan": "p" * 64, "product": FULL_WIDTH * 200, "order_ref": "O" * 64,
}


def _template_inventory(templates_dir: Path, playbook: str
                        ) -> dict[tuple[str, str], dict[tuple[str, str], str]]:
    """(stage, locale) → {(channel, part): template name} of the files on disk."""
    out: dict[tuple[str, str], dict[tuple[str, str], str]] = defaultdict(dict)
    root = templates_dir / playbook
    if not root.is_dir():
        return out
    for path in sorted(root.glob("*/*.j2")):
        if path.parent.name == REPLIES_DIR:  # automatic replies: _reply_problems
            continue
        m = _TEMPLATE.match(path.name)
        if m is None:
            continue
        out[(path.parent.name, m["locale"])][(m["channel"], m["part"])] = (
            path.relative_to(templates_dir).as_posix())
    return out


def _structure(playbook: Playbook, templates_dir: Path,
               channels: Mapping[str, type[Channel]]) -> list[Problem]:
    problems: list[Problem] = []
    inventory = _template_inventory(templates_dir, playbook.name)
    stage_ids = {s.id for s in playbook.stages}
    for stage_id, locale in sorted(inventory):
        if stage_id not in stage_ids:
            problems.append(Problem(playbook.name, "templates for a stage the playbook lacks",
                                    message=stage_id))
        elif locale not in playbook.locales:
            problems.append(Problem(playbook.name, "templates for a locale the playbook lacks",
                                    message=stage_id, locale=locale))
    for stage in playbook.stages:
        union: set[tuple[str, str]] = set()
        for locale in playbook.locales:
            union |= set(inventory.get((stage.id, locale), {}))
        published = playbook.channels_of(stage, channels)
        for channel in published:
            cls = channels.get(channel)
            if cls is None:  # named by channel_problems
                continue
            wanted = {(channel, p) for p in cls.parts} | {k for k in union if k[0] == channel}
            for locale in playbook.locales:
                have = inventory.get((stage.id, locale), {})
                for ch, part in sorted(wanted - set(have)):
                    problems.append(Problem(
                        playbook.name, f"template {playbook.name}/{stage.id}/{ch}.{part}."
                        f"{locale}.j2 is missing", message=stage.id, channel=ch, locale=locale,
                        field=part))
        for ch, part in sorted(k for k in union if k[0] not in published):
            problems.append(Problem(playbook.name, "template for a channel this stage does not "
                                    "publish on", message=stage.id, channel=ch, field=part))
    if playbook.qa:
        counts = {loc: len(playbook.qa.get(loc, ())) for loc in playbook.locales}
        expected = max(counts.values())
        for loc, n in counts.items():
            if n != expected:
                problems.append(Problem(playbook.name, f"has {n} Q&A entries, other locales "
                                        f"have {expected}", locale=loc, field="qa"))
    if playbook.remedies:
        # every locale's agents may grant the same remedies: the same kinds, in the same order
        kinds = {loc: [r.kind for r in playbook.remedies.get(loc, ())]
                 for loc in playbook.locales}
        reference = kinds[playbook.default_locale]
        for loc, kinds_here in kinds.items():
            if kinds_here != reference:
                problems.append(Problem(
                    playbook.name, f"remedies {kinds_here} differ from the default locale's "
                    f"{reference}", locale=loc, field="remedies"))
    return problems


def _where(name: str) -> dict[str, str | None]:
    """message, channel, locale and field (part) of a playbook's template name."""
    m = _TEMPLATE.match(name.rsplit("/", 1)[-1])
    return {"message": name.split("/")[1] if name.count("/") >= 2 else None,
            "channel": m["channel"] if m else None, "locale": m["locale"] if m else None,
            "field": m["part"] if m else None}


def _approval_text(name: str, status: TemplateStatus, *, loaded_by: str | None = None) -> str:
    """What is wrong with a template's approval, and what to do about it."""
    if status.state == "invalid":
        return (f"{status.reason}; review it (crisiscomms templates diff {name}) and approve it "
                "again, or restore the lock from version control")
    what = f"template {name}" + (f" (loaded by {loaded_by})" if loaded_by else "")
    return (f"{what} is {status.state}; review it (crisiscomms templates diff {name}) and "
            "approve it")


def _approval_problems(playbook: Playbook, lock: ApprovalLock) -> list[Problem]:
    problems = []
    for name in lock.template_names():
        if not name.startswith(f"{playbook.name}/"):
            continue
        status = lock.status(name)
        if status.state != "approved":
            problems.append(Problem(playbook.name, _approval_text(name, status), template=name,
                                    **_where(name)))
    return problems


def loaded_templates(playbook: Playbook, templates_dir: Path) -> dict[str, set[str]]:
    """Every template the playbook's own templates load by name (``include``, ``import``,
    ``from``, ``extends``, at any depth) → the playbook's templates that load it. Names only
    known at render time are not here: the render, with the lock, refuses those."""
    from jinja2 import TemplateNotFound, TemplateSyntaxError

    from crisiscomms.render.environment import make_environment

    env = make_environment(templates_dir)
    root = templates_dir / playbook.name
    tops = sorted(p.relative_to(templates_dir).as_posix() for p in root.rglob("*.j2")
                  if p.is_file()) if root.is_dir() else []
    by: dict[str, set[str]] = {}
    for top in tops:
        seen, queue = {top}, [top]
        while queue:
            try:
                refs, _ = referenced_templates(env, read_template(templates_dir, queue.pop()))
            except (TemplateNotFound, TemplateSyntaxError, CrisisCommsError):
                continue  # a missing or broken template: the render names it
            for ref in refs:
                try:
                    key = template_key(ref)
                except TemplateNotFound:
                    continue
                if key not in seen:
                    seen.add(key)
                    queue.append(key)
        for key in seen - {top}:
            by.setdefault(key, set()).add(top)
    return by


def _loaded_problems(playbook: Playbook, templates_dir: Path,
                     lock: ApprovalLock) -> list[Problem]:
    """Partials (templates the playbook's templates load) that are not approved as they are.
    A problem names the partial (``template``) and, where every template loading it agrees,
    the message, channel, locale and part."""
    own = set(lock.template_names())
    problems = []
    for name, users in sorted(loaded_templates(playbook, templates_dir).items()):
        if name in own and name.startswith(f"{playbook.name}/"):
            continue  # checked as one of the playbook's templates
        if not (templates_dir / name).is_file():
            continue  # the render names it as missing
        first = sorted(users)[0]
        by = first if len(users) == 1 else f"{first} and {len(users) - 1} more"
        if name not in own:
            text = (f"template {name} (loaded by {by}) cannot be approved: only .j2 files "
                    "outside hidden folders are templates; rename it")
        else:
            status = lock.status(name)
            if status.state == "approved":
                continue
            text = _approval_text(name, status, loaded_by=by)
        places = [_where(user) for user in users]
        agreed: dict[str, str | None] = {}
        for key in ("message", "channel", "locale", "field"):
            values = {place[key] for place in places}
            agreed[key] = values.pop() if len(values) == 1 else None
        problems.append(Problem(playbook.name, text, template=name, **agreed))
    return problems


def _fill(pattern: re.Pattern[str], subs: Mapping[str, str], text: str) -> str:
    return pattern.sub(lambda m: subs[m.group(0)], text)


def _personal_problems(playbook: Playbook, channel_cls: type[Channel], stage: str,
                       channel: str, locale: str, parts: Mapping[str, str],
                       label: str) -> list[Problem]:
    values = {f: LONGEST_RECIPIENT.get(f, "x" * 200) for f in playbook.recipient_fields}
    subs = recipient_substitutions(values)
    tags = time_tags(parts)
    out: list[Problem] = []
    for zone in LONGEST_TIME_ZONES:
        all_subs = {**subs, **time_values(tags, locale, zone)}
        size = sum(len(k.encode()) + len(v.encode()) for k, v in all_subs.items())
        limit = channel_cls.limits.max_substitution_bytes
        if limit is not None and size > limit:
            out.append(Problem(playbook.name, f"substitutions are {size} bytes, over {limit}",
                               message=stage, channel=channel, locale=locale, facts=label))
        pattern = re.compile("|".join(re.escape(k) for k in sorted(all_subs, key=len,
                                                                   reverse=True)) or "(?!)")
        for part, text in parts.items():
            filled = _fill(pattern, all_subs, text)
            for problem in part_problems(channel_cls.limits, part, filled):
                out.append(Problem(playbook.name, f"with the longest recipient values and "
                                   f"zone {zone}: {problem}", message=stage, channel=channel,
                                   locale=locale, field=part, facts=label))
        if out:
            break
    return out


def lint_playbook(playbook_name: str, playbooks_dir: Path, templates_dir: Path,
                  channels: Mapping[str, type[Channel]],
                  known_components: Collection[str] | None = None) -> list[Problem]:
    try:
        playbook = load_playbook(playbook_name, playbooks_dir)
    except PlaybookError as exc:
        return [_problem(p, playbook_name) for p in exc.each()]
    problems = [_problem(p, playbook.name) for p in playbook.channel_problems(channels)]
    if problems:  # the stages' channels decide which templates belong: nothing more to check
        return problems
    problems = _structure(playbook, templates_dir, channels)
    try:
        lock = ApprovalLock(templates_dir)
    except ApprovalError as exc:  # the lock file itself cannot be read
        return [*problems, Problem(playbook.name, str(exc), field="approvals.lock")]
    problems += _approval_problems(playbook, lock)
    problems += _loaded_problems(playbook, templates_dir, lock)
    problems += _reply_problems(playbook, templates_dir, channels, lock)
    if problems:  # rendering a playbook with missing files only repeats the same problems
        return problems
    if not playbook.drill_facts:
        return [Problem(playbook.name, "has no drill_facts to render with", field="drill_facts")]
    fact_sets: list[tuple[str, dict[str, Any]]] = [
        ("drill", dict(playbook.drill_facts)), ("longest", longest_facts(playbook.drill_facts))]
    urgent = urgent_facts(playbook.drill_facts)
    if urgent is not None and playbook.notice is not None and playbook.notice.urgent:
        fact_sets.append(("urgent", urgent))
    renderer = StageRenderer(templates_dir, channels, approvals=lock)  # as a trigger renders
    for label, data in fact_sets:
        try:
            sheet = build_fact_sheet(data)
        except FactsError as exc:
            problems += _facts_problems(playbook, exc, label)
            continue
        for stage in playbook.stages:
            problems += _stage_problems(playbook, stage, sheet, renderer, channels, label)
    problems += intake_problems(playbook, renderer, channels, known_components)
    return _unique(problems)


def _stage_problems(playbook: Playbook, stage: Stage, sheet: FactSheet, renderer: StageRenderer,
                    channels: Mapping[str, type[Channel]], label: str) -> list[Problem]:
    """The stage's required facts, then every channel and locale rendered as a trigger would."""
    problems = [_problem(fault, playbook.name, stage=stage.id, facts=label)
                for fault in fact_problems(playbook, stage, sheet)]
    for channel in playbook.channels_of(stage, channels):
        cls = channels[channel]
        for locale in playbook.locales:
            try:
                message, _ = renderer.render_message(playbook, stage, sheet, channel, locale)
            except CrisisCommsError as exc:
                problems += [_problem(p, playbook.name, stage=stage.id, channel=channel,
                                      locale=locale, facts=label) for p in exc.each()]
                continue
            if cls.personal:
                problems += _personal_problems(playbook, cls, stage.id, channel, locale,
                                               message.parts, label)
    return problems


def intake_problems(playbook: Playbook, renderer: StageRenderer,
                    channels: Mapping[str, type[Channel]],
                    known_components: Collection[str] | None = None) -> list[Problem]:
    """The ``intake:`` rules (their stages, regexes and severities are checked when the
    playbook loads): the components they map to exist on the status page (when it knows any),
    and the facts each rule makes of a plausible signal, plus what ``trigger`` adds, pass the
    stage's required facts and render, for its start stage and the resolution it proposes."""
    problems: list[Problem] = []
    for i, rule in enumerate(playbook.intake.rules if playbook.intake else ()):
        where = f"intake.rules.{i}"
        if known_components and rule.components is not None:
            named = [*rule.components.map.values(), *filter(None, [rule.components.fallback])]
            unknown = sorted({c for c in named if c not in known_components})
            if unknown:
                problems.append(Problem(
                    playbook.name, f"rule {rule.name}: components {unknown} are not on the "
                    f"status page ({', '.join(sorted(known_components))})",
                    field=f"{where}.components"))
        for signals in plausible_signals(playbook, rule):
            base: FactSheet | None = None
            for signal in signals:
                request = stage_request(signal, playbook, rule, now=signal.started_at)
                if request is None:
                    continue
                label = f"intake rule {rule.name}, {signal.kind.value} {signal.status}"
                facts = dict(request.facts)
                if base is None:  # what trigger adds to a new incident
                    for key in ("incident_ref", "organization", "status_page_url"):
                        facts.setdefault(key, playbook.drill_facts.get(key, SAMPLE[key]))
                try:
                    sheet = build_fact_sheet(facts, base=base)
                except FactsError as exc:
                    problems += [Problem(playbook.name, f"rule {rule.name}: {f.reason}",
                                         message=request.stage, field=f"{where}.facts."
                                         f"{f.field or 'facts'}", facts=label)
                                 for f in exc.each()]
                    break
                base = sheet
                problems += [replace(p, field=p.field or where) for p in _stage_problems(
                    playbook, playbook.stage(request.stage), sheet, renderer, channels, label)]
    return problems


SAMPLE = {"incident_ref": "OUTAGE-20261201-0712-3f9a2c", "organization": "Example Corp",
          "status_page_url": "https://status.example.com"}
"""What ``trigger`` adds when the drill facts do not say (the settings' defaults)."""

SENDER_SECTIONS = {SourceKind.events: ("recall", "breach"), SourceKind.recall: ("recall",)}
"""The facts a sender of this kind brings itself (our events, recall feeds); alerts bring
none: every published word of theirs is the rule's."""


def plausible_signals(playbook: Playbook, rule: IntakeRule) -> list[list[Signal]]:
    """Per kind of sender the rule takes: a firing signal and its resolution, with a mapped
    component and a mapped severity (whether the rule's ``match`` takes them is beside the
    point: lint checks what the rule makes of a signal it takes), and the sections of the
    drill facts such a sender brings (a recall feed its ``recall`` section)."""
    kinds = {SourceKind(s) for s in rule.sources if s in SourceKind.__members__}
    if len(kinds) < len(rule.sources):  # a source named, not a kind: an alert sender
        kinds.add(SourceKind.alertmanager)
    labels: dict[str, str] = {}
    if rule.components is not None and rule.components.map:
        labels[rule.components.label] = next(iter(rule.components.map))
    if rule.severity.label and rule.severity.map:
        labels[rule.severity.label] = next(iter(rule.severity.map))
    started = datetime(2026, 11, 23, 9, 40, tzinfo=UTC)
    out: dict[tuple[str, ...], list[Signal]] = {}
    for kind in sorted(kinds):
        sections = SENDER_SECTIONS.get(kind, ())
        if sections in out:
            continue
        drill = playbook.drill_facts
        facts: dict[str, Any] = {k: drill[k] for k in sections if k in drill}
        translations = {loc: {p: v for p, v in entries.items() if p.split(".")[0] in sections}
                        for loc, entries in drill.get("translations", {}).items()}
        if any(translations.values()):
            facts["translations"] = translations
        firing = Signal(source=f"lint-{kind.value}", kind=kind, dedup_key="lint",
                        group_key="lint", status="firing", labels=labels, started_at=started,
                        playbook=playbook.name if kind is SourceKind.events else None,
                        facts=facts)
        out[sections] = [firing, replace(firing, status="resolved",
                                                   ended_at=started + timedelta(hours=1))]
    return list(out.values())



def _reply_problems(playbook: Playbook, templates_dir: Path,
                    channels: Mapping[str, type[Channel]], lock: ApprovalLock) -> list[Problem]:
    """The automatic replies (``listening.replies``): each rule has reply templates, on known
    channels, with every part of the channel in every locale of the playbook (their approval is
    checked with every template of the playbook), and each renders, through the approval
    lock, with the drill facts, within the channel's limits, carrying the status page link."""
    problems: list[Problem] = []
    rules = {r.id for r in playbook.listening.replies}
    folder = templates_dir / playbook.name / REPLIES_DIR
    have: dict[tuple[str, str], set[tuple[str, str]]] = defaultdict(set)
    for path in sorted(folder.glob("*.j2")) if folder.is_dir() else []:
        name = path.relative_to(templates_dir).as_posix()
        m = _REPLY.match(path.name)
        if m is None or m["rule"] not in rules or m["channel"] not in channels \
                or m["locale"] not in playbook.locales:
            problems.append(Problem(playbook.name, f"reply template {name} is not "
                                    "<rule>.<channel>.<part>.<locale>.j2 of a listening.replies "
                                    "rule, a channel and a locale of the playbook",
                                    message=REPLIES_DIR, template=name))
            continue
        have[(m["rule"], m["channel"])].add((m["part"], m["locale"]))  # approval: above
    for rule in sorted(rules):
        if not any(r == rule for r, _ in have):
            problems.append(Problem(playbook.name, f"reply rule {rule} has no templates "
                                    f"({playbook.name}/{REPLIES_DIR}/{rule}.<channel>.<part>."
                                    "<locale>.j2)", message=f"{REPLIES_DIR}/{rule}",
                                    field="listening.replies"))
    for (rule, channel), found in sorted(have.items()):
        for part in channels[channel].parts:
            for locale in playbook.locales:
                if (part, locale) not in found:
                    problems.append(Problem(
                        playbook.name, f"template {playbook.name}/{REPLIES_DIR}/{rule}.{channel}."
                        f"{part}.{locale}.j2 is missing", message=f"{REPLIES_DIR}/{rule}",
                        channel=channel, locale=locale, field=part))
    if problems or not have or not playbook.drill_facts:
        return problems
    from crisiscomms.reactions.replies import ReplyRenderer  # replies render like a send

    renderer = ReplyRenderer(templates_dir, lock)
    try:
        sheet = build_fact_sheet(dict(playbook.drill_facts))
    except FactsError:
        return problems  # the stages' rendering names the facts
    for rule, channel in sorted(have):
        for locale in playbook.locales:
            authors: tuple[tuple[str, str | None], ...] = (("@a_fifteen_chars", "Ｗ" * 60),
                                                           ("someone", None))
            for author, shown in authors:
                try:
                    renderer.render(playbook, rule, channels[channel], locale, sheet,
                                    author=author, author_name=shown, production=False)
                except CrisisCommsError as exc:
                    problems += [_problem(p, playbook.name, stage=f"{REPLIES_DIR}/{rule}",
                                          channel=channel, locale=locale, facts="drill")
                                 for p in exc.each()]
                    break
    return problems


def _unique(problems: list[Problem]) -> list[Problem]:
    """One problem once: the same fault found with several fact sets is named with the first."""
    seen: set[tuple[str | None, ...]] = set()
    out = []
    for p in problems:
        key = (p.playbook, p.text, p.message, p.channel, p.locale, p.field)
        if key not in seen:
            seen.add(key)
            out.append(p)
    return out


def _problem(exc: CrisisCommsError, playbook: str, *, stage: str | None = None,
             channel: str | None = None, locale: str | None = None,
             facts: str | None = None) -> Problem:
    """A lint problem from an error's fields (where the error says nothing, where lint was)."""
    return Problem(exc.playbook or playbook, exc.reason, message=exc.stage or stage,
                   channel=exc.channel or channel, locale=exc.locale or locale,
                   field=exc.field, facts=facts, template=exc.template)


def _facts_problems(playbook: Playbook, exc: FactsError, label: str) -> list[Problem]:
    """Invalid drill facts: one problem per fact and message that cannot be rendered."""
    out = []
    for fault in exc.each():
        field = fault.field or "drill_facts"
        for stage in playbook.stages:
            out.append(Problem(playbook.name, f"drill_facts.{field}: {fault.reason}; no message "
                               "of this stage can be rendered", message=stage.id, field=field,
                               facts=label))
    return out


def resolve_paths(path: Path | None, playbooks_dir: Path, templates_dir: Path
                  ) -> tuple[Path, Path, list[str] | None]:
    """``PATH``: a project folder (with playbooks/ and templates/), a playbooks folder, or one
    playbook file; None means the configured folders."""
    if path is None:
        return playbooks_dir, templates_dir, None
    if path.is_file():
        return path.parent, path.parent.parent / "templates", [path.stem]
    if (path / "playbooks").is_dir():
        return path / "playbooks", path / "templates", None
    return path, path.parent / "templates", None


def lint(playbooks_dir: Path, templates_dir: Path, channels: Mapping[str, type[Channel]],
         names: list[str] | None = None, *, known_components: Collection[str] | None = None
         ) -> tuple[list[str], list[Problem]]:
    """Lint every playbook (or ``names``); returns the playbooks checked and the problems.
    ``known_components``: the status page's components, which intake rules may map to (None
    or empty: a page that knows none yet, not checked)."""
    checked = names if names is not None else available_playbooks(playbooks_dir)
    problems: list[Problem] = []
    for name in checked:
        problems += lint_playbook(name, playbooks_dir, templates_dir, channels,
                                  known_components)
    return checked, problems
