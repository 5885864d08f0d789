"""Personalised renders per second, our path beside bare Jinja, measured in one run.

A personalised render is one recipient's email as they read it: subject, text and HTML.

Ours (the path publishing takes): each approved template is rendered ONCE per locale by
``StageRenderer`` (sandboxed, StrictUndefined, approval-checked, limits and canonical facts
checked), with substitution tags for the declared personal fields and per-recipient time tags;
then, per recipient, ``crisiscomms.delivery.sender._recipients`` builds the substitutions from the
recipient's row (fallbacks per locale, HTML-escaped variants, times in the recipient's own
zone) and the tags are filled as SendGrid fills them (``apply_substitutions``, the emulator's
copy of SendGrid's behaviour) into the final subject, text and HTML.

Bare: a plain ``jinja2.Environment`` (no sandbox, no StrictUndefined) compiles the same template
files, with the same filters registered (the templates use them), and ``Template.render`` runs
once per recipient and part with that recipient's values and time zone. The localized facts
are prepared once per locale for it too, so the loop is nothing but Jinja.

``ours_substitutions_only_per_cpu_s`` is the part that runs on our side in production (the
per-recipient substitutions that go into the SendGrid request); the provider fills the text.

Also: the sandboxed environment rendering each recipient's full text the same way (``sandbox``),
to show what the sandbox itself costs against bare Jinja on identical work.

Recipients are the drill audience (``crisiscomms.testing.audiences.drill_recipients``: five
languages,
regional tags such as es-MX resolving to es, several time zones per language), in batches of
1,000 per resolved locale as the ledger plans them. Building the rows is not timed; everything
from a row to the final text is. The baselines render a sample (``--baseline-recipients``,
spread over the same locales): per-render rates compare directly. Single thread: renders per
second are per core; ``*_per_cpu_s`` and ``cpu_ratio_*`` use the process CPU time of the timed
work, which a busy shared machine does not inflate the way it does wall time (ratios are
time per render, ours over bare: below 1 is faster than bare Jinja).

    uv run python bench/render.py [--recipients 1000000] [--playbook product_recall] [--json]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import jinja2

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import content_dirs, content_note, emit, peak_rss_mb, workdir

BATCH = 1000
PARTS = ("subject", "text", "html")

Row = tuple[int, str, str | None, str | None, bool, str, str | None, str | None]
"""(id, email, name, plan, consent, time zone, product, order_ref): the columns publishing
reads per recipient."""


class _Rows:
    """Stands in for the database connection: answers ``_recipients``' query with the rows."""

    def __init__(self, rows: Sequence[Row]) -> None:
        self.rows = rows

    def execute(self, _stmt: object) -> Sequence[Row]:
        return self.rows


def batches(count: int, locales: Sequence[str], default: str
            ) -> Iterator[tuple[str, list[Row], list[str]]]:
    """(resolved locale, rows, their requested locale tags), ``BATCH`` recipients at most."""
    from crisiscomms.core.locales import resolve_locale
    from crisiscomms.testing.audiences import drill_recipients

    pending: dict[str, tuple[list[Row], list[str]]] = {loc: ([], []) for loc in locales}
    for i, r in enumerate(drill_recipients(count, locales=tuple(locales),
                                           spread_time_zones=True), start=1):
        tag = str(r["locale"])
        loc = resolve_locale(tag, locales, default)
        rows, tags = pending[loc]
        rows.append((i, str(r["email"]), cast(str | None, r["name"]),
                     cast(str | None, r["plan"]), True, str(r["time_zone"]), None, None))
        tags.append(tag)
        if len(rows) >= BATCH:
            yield loc, rows, tags
            pending[loc] = ([], [])
    for loc, (rows, tags) in pending.items():
        if rows:
            yield loc, rows, tags


def setup(playbook_name: str, work: Path) -> dict[str, Any]:
    from crisiscomms.channels import CHANNEL_CLASSES
    from crisiscomms.delivery.sender import _MessageContext
    from crisiscomms.incident.facts import build_fact_sheet
    from crisiscomms.playbook.loader import load_playbook
    from crisiscomms.render.approvals import ApprovalLock
    from crisiscomms.render.environment import (
        StageRenderer,
        Where,
        substitution_tag,
        time_tags,
    )

    playbooks, templates = content_dirs(work)  # committed ones while others edit
    playbook = load_playbook(playbook_name, playbooks)
    stage = next(s for s in playbook.stages
                 if "email" in playbook.channels_of(s, CHANNEL_CLASSES))
    facts = build_fact_sheet(dict(playbook.drill_facts))
    started = time.perf_counter()
    renderer = StageRenderer(templates, CHANNEL_CLASSES, approvals=ApprovalLock(templates))
    contexts: dict[str, _MessageContext] = {}
    names: dict[str, dict[str, str]] = {}
    for locale in playbook.locales:
        message, _ = renderer.render_message(playbook, stage, facts, "email", locale)
        fields = tuple((f, spec.fallback_for(locale, playbook.default_locale),
                        substitution_tag(f, html=False), substitution_tag(f, html=True))
                       for f, spec in playbook.recipient_fields.items())
        contexts[locale] = _MessageContext(message=message, facts=facts,
                                           incident_status=str(stage.incident_status),
                                           fields=fields, reply_to=None,
                                           time_tags=time_tags(message.parts))
        names[locale] = renderer.part_names(playbook.name, stage.id, "email", locale)
        for part, text in message.parts.items():  # the short variant when the long is over
            if part not in names[locale]:
                continue
            short = names[locale][part].replace(f".{part}.", f".{part}_short.")
            if (templates / short).is_file() and text == renderer.render_part(
                    short, renderer._part_context(playbook, stage, facts, locale, True, short),
                    Where(playbook.name, stage.id, "email", locale)):
                names[locale][part] = short
    return {"playbook": playbook, "stage": stage, "facts": facts, "renderer": renderer,
            "contexts": contexts, "names": names, "templates": templates,
            "once_per_locale_s": time.perf_counter() - started}


def ours(env: Mapping[str, Any], count: int) -> tuple[float, float, float, int, int]:
    """(wall s, cpu s, cpu s of the substitutions alone, renders, characters) of our
    per-recipient path over ``count``."""
    from crisiscomms.delivery.sender import _recipients
    from crisiscomms.testing.emulators.sendgrid import apply_substitutions

    playbook = env["playbook"]
    contexts = env["contexts"]
    wall = cpu = subs_cpu = 0.0
    renders = chars = 0
    for locale, rows, _ in batches(count, playbook.locales, playbook.default_locale):
        ctx = contexts[locale]
        parts = [ctx.message.parts[p] for p in PARTS]
        ids = [r[0] for r in rows]
        c0, w0 = time.process_time(), time.perf_counter()
        recipients, _ = _recipients(cast(Any, _Rows(rows)), ids, ctx.fields,
                                    tags=ctx.time_tags, locale=locale)
        subs_cpu += time.process_time() - c0
        for recipient in recipients:
            subs = cast(dict[str, str], recipient.substitutions)
            for text in parts:
                chars += len(apply_substitutions(text, subs) or "")
        wall += time.perf_counter() - w0
        cpu += time.process_time() - c0
        renders += len(recipients)
    return wall, cpu, subs_cpu, renders, chars


def _per_recipient_context(env: Mapping[str, Any], locale: str, row: Row,
                           html: bool) -> dict[str, Any]:
    playbook = env["playbook"]
    ctx: dict[str, Any] = dict(env["base_contexts"][locale])
    name = row[2]
    first = name.split(None, 1)[0] if name and not name.isspace() else ""
    values = {"first_name": first, "name": name or "", "email": row[1], "plan": row[3] or ""}
    ctx["recipient"] = {f: values.get(f) or spec.fallback_for(locale, playbook.default_locale)
                        for f, spec in playbook.recipient_fields.items()}
    ctx["time_zone"] = row[5]
    ctx["html_part"] = html
    return ctx


def full_renders(env: dict[str, Any], count: int, *, sandbox: bool) -> tuple[float, float, int]:
    """(wall s, cpu s, renders): every part rendered per recipient, bare Jinja or sandboxed."""
    from crisiscomms.render.environment import make_environment

    playbook, stage, facts = env["playbook"], env["stage"], env["facts"]
    renderer = env["renderer"]
    env["base_contexts"] = {
        loc: renderer.context(playbook, stage, facts, loc, personal=False)
        for loc in playbook.locales}
    if sandbox:
        jenv: jinja2.Environment = make_environment(env["templates"])
    else:
        jenv = jinja2.Environment(autoescape=lambda n: n is not None and ".html." in n,
                                  trim_blocks=True, lstrip_blocks=True)
        jenv.filters.update(make_environment(env["templates"]).filters)
    compiled: dict[str, list[tuple[jinja2.Template, bool]]] = {}
    for loc, by_part in env["names"].items():
        compiled[loc] = []
        for part in PARTS:
            name = by_part[part]
            html = ".html." in name
            if sandbox:
                compiled[loc].append((jenv.get_template(name), html))
            else:
                source = (env["templates"] / name).read_text(encoding="utf-8")
                compiled[loc].append((_bare_template(jenv, source, html), html))
    wall = cpu = 0.0
    renders = 0
    for locale, rows, _ in batches(count, playbook.locales, playbook.default_locale):
        templates = compiled[locale]
        contexts = [(_per_recipient_context(env, locale, row, False),
                     _per_recipient_context(env, locale, row, True)) for row in rows]
        c0, w0 = time.process_time(), time.perf_counter()
        for text_ctx, html_ctx in contexts:
            for template, html in templates:
                template.render(html_ctx if html else text_ctx)
        wall += time.perf_counter() - w0
        cpu += time.process_time() - c0
        renders += len(rows)
    return wall, cpu, renders


def _bare_template(jenv: jinja2.Environment, source: str, html: bool) -> jinja2.Template:
    """A ``jinja2.Template`` compiled by a plain environment (autoescape for HTML parts)."""
    if not html:
        return jenv.from_string(source)
    escaping = jenv.overlay(autoescape=True)
    return escaping.from_string(source)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipients", type=int, default=1_000_000)
    parser.add_argument("--baseline-recipients", type=int, default=20_000,
                        help="recipients for the bare Jinja and sandbox full-render loops")
    parser.add_argument("--playbook", default="product_recall",
                        help="a playbook with a personal email in five locales")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    work = workdir()
    try:
        env = setup(args.playbook, work)
        report = measure(env, args)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    emit(report, args.json)


def measure(env: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    wall, cpu, subs_cpu, renders, chars = ours(env, args.recipients)
    sample = min(args.baseline_recipients, args.recipients)
    bare_wall, bare_cpu, bare_n = full_renders(env, sample, sandbox=False)
    sb_wall, sb_cpu, sb_n = full_renders(env, sample, sandbox=True)
    ours_per_s = renders / wall
    bare_per_s = bare_n / bare_wall
    sandbox_per_s = sb_n / sb_wall
    report = {
        "playbook": args.playbook,
        "locales": ",".join(env["playbook"].locales),
        "parts": ",".join(PARTS),
        "recipients": renders,
        "ours_s": round(wall, 2),
        "ours_per_s": round(ours_per_s, 1),
        "ours_per_cpu_s": round(renders / cpu, 1) if cpu else None,
        "ours_substitutions_only_per_cpu_s": round(renders / subs_cpu, 1) if subs_cpu else None,
        "ours_avg_chars": round(chars / renders / len(PARTS), 1) if renders else 0,
        "once_per_locale_render_s": round(env["once_per_locale_s"], 3),
        "bare_jinja_recipients": bare_n,
        "bare_jinja_per_s": round(bare_per_s, 1),
        "bare_jinja_per_cpu_s": round(bare_n / bare_cpu, 1) if bare_cpu else None,
        "time_ratio_ours_vs_bare": round(bare_per_s / ours_per_s, 4),
        "cpu_ratio_ours_vs_bare": round((cpu / renders) / (bare_cpu / bare_n), 4)
        if bare_cpu else None,
        "sandbox_full_render_per_s": round(sandbox_per_s, 1),
        "sandbox_full_render_per_cpu_s": round(sb_n / sb_cpu, 1) if sb_cpu else None,
        "time_ratio_sandbox_vs_bare": round(bare_per_s / sandbox_per_s, 3),
        "cpu_ratio_sandbox_vs_bare": round((sb_cpu / sb_n) / (bare_cpu / bare_n), 3)
        if bare_cpu else None,
        "aim": "time ratio <= 1.3 and >= 50,000 renders/s per core",
        "peak_rss_mb": peak_rss_mb(),
        "content": content_note(),
    }
    return report


if __name__ == "__main__":
    main()
