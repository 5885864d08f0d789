"""The checking loader: every template Jinja loads, at any depth, is the approved text.

Each case renders a real ``StageRenderer`` with a real ``approvals.lock`` in a temporary
templates folder: a message template that pulls in a partial by ``include``, ``import``,
``from ... import`` or ``extends``, approved, then the partial edited (or a new one never
approved). The refusal names the partial (``template``) and where it was used.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import approvers
import pytest
from jinja2 import TemplateNotFound
from mini_playbook import PLAYBOOK, STAGE

from crisiscomms.channels import CHANNEL_CLASSES
from crisiscomms.core.errors import ApprovalError, RenderError
from crisiscomms.incident.facts import FactSheet, build_fact_sheet
from crisiscomms.render.approvals import ApprovalLock, sha256_text
from crisiscomms.render.environment import StageRenderer, make_environment

TOP = "pb/s/x.text.en.j2"
EXPECTED = "API down. Updates: https://status.example.com/"

CONSTRUCTS: dict[str, tuple[str, str, str]] = {
    # construct: (message template, partial name, partial text)
    "include": ('{{ facts.title }}. {% include "partials/footer.j2" %}',
                "partials/footer.j2", "Updates: {{ facts.status_page_url }}"),
    "import": ('{% import "partials/macros.j2" as m %}{{ facts.title }}. '
               "{{ m.footer(facts.status_page_url) }}",
               "partials/macros.j2", "{% macro footer(url) %}Updates: {{ url }}{% endmacro %}"),
    "from": ('{% from "partials/macros.j2" import footer %}{{ facts.title }}. '
             "{{ footer(facts.status_page_url) }}",
             "partials/macros.j2", "{% macro footer(url) %}Updates: {{ url }}{% endmacro %}"),
    "extends": ('{% extends "partials/layout.j2" %}{% block body %}{{ facts.title }}.'
                "{% endblock %}",
                "partials/layout.j2",
                "{% block body %}{% endblock %} Updates: {{ facts.status_page_url }}"),
}


def facts() -> FactSheet:
    return build_fact_sheet({
        "incident_ref": "INC-1", "organization": "Example Corp", "title": "API down",
        "severity": "major", "components": ["API"], "started_at": "2026-11-23T09:40:00+00:00",
        "time_zone": "Europe/Berlin", "status_page_url": "https://status.example.com/",
    })


def write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def home(root: Path) -> Path:
    """Where the test's approvers keep their private keys (outside the templates folder)."""
    return root.parent / f"{root.name}-home"


def approve_all(root: Path) -> None:
    approvers.approve_all(root, home(root))


def render_x(root: Path, renderer: StageRenderer | None = None) -> tuple[str, dict[str, str]]:
    renderer = renderer or StageRenderer(root, CHANNEL_CLASSES, approvals=ApprovalLock(root))
    message, hashes = renderer.render_message(PLAYBOOK, STAGE, facts(), "x", "en")
    return message.parts["text"], hashes


def refusal(root: Path, renderer: StageRenderer | None = None) -> ApprovalError:
    with pytest.raises(ApprovalError) as caught:
        render_x(root, renderer)
    return caught.value


@pytest.fixture(params=sorted(CONSTRUCTS))
def construct(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Path, str]:
    """An approved message template pulling in an approved partial: (root, partial name)."""
    top, partial, text = CONSTRUCTS[request.param]
    write(tmp_path, {TOP: top, partial: text})
    approve_all(tmp_path)
    return tmp_path, partial


def test_an_approved_partial_renders_and_is_hashed(construct: tuple[Path, str]) -> None:
    root, partial = construct
    text, hashes = render_x(root)
    assert text == EXPECTED
    assert hashes == {TOP: ApprovalLock(root).source_hash(TOP),
                      partial: ApprovalLock(root).source_hash(partial)}


def test_a_partial_edited_after_approval_is_refused_naming_it(
        construct: tuple[Path, str]) -> None:
    root, partial = construct
    path = root / partial
    path.write_text(path.read_text(encoding="utf-8").replace("Updates:", "UNAPPROVED:"),
                    encoding="utf-8")
    exc = refusal(root)
    assert exc.fields() == {"playbook": "pb", "stage": "s", "template": partial,
                            "channel": "x", "locale": "en", "field": "text"}
    assert f"template {partial} was edited after approval" in str(exc)
    assert f"(loaded by {TOP})" in str(exc)


def test_an_unapproved_new_partial_is_refused_naming_it(tmp_path: Path) -> None:
    write(tmp_path, {TOP: "{{ facts.title }}."})
    approve_all(tmp_path)
    write(tmp_path, {"partials/new.j2": "UNAPPROVED {{ facts.status_page_url }}",
                     TOP: '{{ facts.title }}. {% include "partials/new.j2" %}'})
    approvers.approve_all(tmp_path, home(tmp_path), names=[TOP])  # only the message template
    exc = refusal(tmp_path)
    assert exc.template == "partials/new.j2" and "partials/new.j2 is not approved" in str(exc)


def test_nested_partials_are_checked_at_every_depth(tmp_path: Path) -> None:
    write(tmp_path, {
        TOP: '{{ facts.title }}. {% include "partials/a.j2" %}',
        "partials/a.j2": '{% import "partials/b.j2" as b %}{{ b.updates(facts) }}',
        "partials/b.j2": '{% macro updates(f) %}{% include "partials/c.j2" %}{% endmacro %}',
        "partials/c.j2": "Updates: {{ f.status_page_url }}",
    })
    approve_all(tmp_path)
    text, hashes = render_x(tmp_path)
    assert text == EXPECTED
    assert set(hashes) == {TOP, "partials/a.j2", "partials/b.j2", "partials/c.j2"}
    write(tmp_path, {"partials/c.j2": "UNAPPROVED {{ f.status_page_url }}"})
    exc = refusal(tmp_path)
    assert exc.template == "partials/c.j2" and exc.channel == "x" and exc.locale == "en"


def test_a_cached_template_is_checked_again_on_every_use(construct: tuple[Path, str]) -> None:
    """One renderer (Jinja's cache warm): an edit after the first render is still refused."""
    root, partial = construct
    renderer = StageRenderer(root, CHANNEL_CLASSES, approvals=ApprovalLock(root))
    first, hashes = render_x(root, renderer)
    again, hashes_again = render_x(root, renderer)  # from the cache: still recorded
    assert first == again == EXPECTED and hashes_again == hashes
    path = root / partial
    path.write_text(path.read_text(encoding="utf-8").replace("Updates:", "UNAPPROVED:"),
                    encoding="utf-8")
    assert refusal(root, renderer).template == partial
    (root / TOP).write_text("{{ facts.title }} UNAPPROVED", encoding="utf-8")
    assert refusal(root, renderer).template == TOP


def test_the_content_hash_covers_every_template_loaded(tmp_path: Path) -> None:
    """A partial approved again with the same output still changes what a bundle approves."""
    top, partial, text = CONSTRUCTS["include"]
    write(tmp_path, {TOP: top, partial: text})
    approve_all(tmp_path)
    renderer = StageRenderer(tmp_path, CHANNEL_CLASSES, approvals=ApprovalLock(tmp_path))
    before, _ = renderer.render_message(PLAYBOOK, STAGE, facts(), "x", "en")
    write(tmp_path, {partial: "{# reviewed #}" + text})
    approve_all(tmp_path)
    renderer = StageRenderer(tmp_path, CHANNEL_CLASSES, approvals=ApprovalLock(tmp_path))
    after, hashes = renderer.render_message(PLAYBOOK, STAGE, facts(), "x", "en")
    assert after.parts == before.parts
    assert after.content_hash != before.content_hash
    assert hashes[partial] == sha256_text("{# reviewed #}" + text)


def _has_reader(fifo: Path) -> bool:
    """Whether someone holds the pipe open for reading (opening it to write without waiting
    fails with ENXIO otherwise); the probe writes nothing."""
    try:
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_the_text_compiled_is_the_text_checked(tmp_path: Path) -> None:
    """The template is a named pipe that serves the approved text to its first reader and
    edited text to every later one: a check of one read and a compile of another would
    render the edited text. One read, checked and compiled, renders the approved one."""
    approved = "{{ facts.title }}. Updates: {{ facts.status_page_url }}"
    write(tmp_path, {TOP: approved})
    approve_all(tmp_path)
    fifo = tmp_path / TOP
    fifo.unlink()
    os.mkfifo(fifo)
    stop = threading.Event()

    def serve() -> None:
        for text in [approved] + ["{{ facts.title }}. UNAPPROVED"] * 3:
            try:
                with open(fifo, "w", encoding="utf-8") as pipe:  # waits for a reader
                    pipe.write(text)
            except BrokenPipeError:
                pass
            while _has_reader(fifo) and not stop.is_set():  # one text per read, never two
                stop.wait(0.001)
            if stop.is_set():
                return

    writer = threading.Thread(target=serve, daemon=True)
    writer.start()
    try:
        text, hashes = render_x(tmp_path)
    finally:
        stop.set()
        while writer.is_alive():  # let a writer waiting for a reader finish
            os.close(os.open(fifo, os.O_RDONLY | os.O_NONBLOCK))
            writer.join(timeout=0.1)
    assert text == EXPECTED
    assert hashes == {TOP: sha256_text(approved)}


def test_without_a_lock_templates_render_and_are_still_hashed(tmp_path: Path) -> None:
    top, partial, text = CONSTRUCTS["include"]
    write(tmp_path, {TOP: top, partial: text})
    rendered, hashes = render_x(tmp_path, StageRenderer(tmp_path, CHANNEL_CLASSES))
    assert rendered == EXPECTED and hashes[partial] == sha256_text(text)


def test_a_missing_or_failing_partial_is_named(tmp_path: Path) -> None:
    write(tmp_path, {TOP: '{{ facts.title }}. {% include "partials/gone.j2" %}'})
    with pytest.raises(RenderError, match=r"template partials/gone\.j2 \(needed by") as caught:
        render_x(tmp_path, StageRenderer(tmp_path, CHANNEL_CLASSES))
    assert caught.value.template == "partials/gone.j2"
    write(tmp_path, {TOP: '{{ facts.title }}. {% include "partials/bad.j2" %}',
                     "partials/bad.j2": "{{ facts.nope }}"})
    with pytest.raises(RenderError, match="undefined value") as caught:
        render_x(tmp_path, StageRenderer(tmp_path, CHANNEL_CLASSES))
    assert caught.value.template == "partials/bad.j2" and caught.value.field == "text"


def test_a_partial_cannot_name_an_undeclared_recipient_field(tmp_path: Path) -> None:
    write(tmp_path, {"pb/s/email.subject.en.j2": "{{ facts.title }}",
                     "pb/s/email.html.en.j2": "<p>{{ facts.title }}</p>",
                     "pb/s/email.text.en.j2": '{% include "partials/hi.j2" %}',
                     "partials/hi.j2": "Hi {{ recipient.plan }}"})
    renderer = StageRenderer(tmp_path, CHANNEL_CLASSES)
    with pytest.raises(RenderError, match=r"uses recipient\.plan, which the playbook") as caught:
        renderer.render_message(PLAYBOOK, STAGE, facts(), "email", "en")
    assert caught.value.template == "partials/hi.j2"


@pytest.mark.parametrize("name", ["../outside.j2", ".approved/copy.j2", "pb/../../x.j2"])
def test_names_outside_the_templates_or_hidden_are_not_templates(tmp_path: Path,
                                                                  name: str) -> None:
    write(tmp_path, {".approved/copy.j2": "old approved copy"})
    (tmp_path.parent / "outside.j2").write_text("outside", encoding="utf-8")
    env = make_environment(tmp_path)
    with pytest.raises(TemplateNotFound):
        env.get_template(name)


def test_crlf_text_is_checked_as_approved(tmp_path: Path) -> None:
    """The lock hashes text with universal newlines (as it was read to approve it)."""
    (tmp_path / "pb/s").mkdir(parents=True)
    (tmp_path / TOP).write_bytes(b"{{ facts.title }}.\r\nUpdates: {{ facts.status_page_url }}")
    approve_all(tmp_path)
    assert render_x(tmp_path)[0] == "API down.\nUpdates: https://status.example.com/"


def test_the_loader_records_what_a_render_loaded(tmp_path: Path) -> None:
    from crisiscomms.render.loader import CheckingLoader

    top, partial, text = CONSTRUCTS["include"]
    write(tmp_path, {TOP: top, partial: text})
    loader = CheckingLoader(tmp_path)
    env = make_environment(tmp_path, loader=loader)
    with loader.recording() as outer:
        env.get_template(TOP).render(facts=facts().localized(["en"]))
        with loader.recording() as inner:
            env.get_template(partial)
    assert set(outer) == {TOP, partial} and set(inner) == {partial}
    assert loader.compiled(partial) == (sha256_text(text), text)


@pytest.mark.parametrize(("top", "partial"), [
    ('<p>{% include "partials/footer.j2" %}</p>', "partials/footer.j2"),
    ('{% import "partials/m.j2" as m %}<p>{{ m.say(facts.title) }}</p>', "partials/m.j2"),
    ('{% extends "partials/layout.j2" %}{% block body %}<p>x</p>{% endblock %}',
     "partials/layout.j2"),
])
def test_an_html_part_loads_only_html_partials(tmp_path: Path, top: str, partial: str) -> None:
    """Jinja escapes a partial by its own name: a plain one in an HTML part would print a
    fact's ``<script>`` as is. It is refused, naming it; its ``.html.`` twin escapes."""
    text = {"partials/footer.j2": "{{ facts.title }}",
            "partials/m.j2": "{% macro say(v) %}{{ v }}{% endmacro %}",
            "partials/layout.j2": "{{ facts.title }}{% block body %}{% endblock %}"}[partial]
    html = partial.replace(".j2", ".html.j2")
    write(tmp_path, {"pb/s/email.subject.en.j2": "{{ facts.title }}",
                     "pb/s/email.text.en.j2": "{{ facts.title }}",
                     "pb/s/email.html.en.j2": top, partial: text, html: text})
    renderer = StageRenderer(tmp_path, CHANNEL_CLASSES)
    sheet = build_fact_sheet({**facts().model_dump(mode="json"), "title": "<script>x"})
    with pytest.raises(RenderError, match=r"not HTML-escaped; name it .*\.html\.j2") as caught:
        renderer.render_message(PLAYBOOK, STAGE, sheet, "email", "en")
    assert caught.value.template == partial and caught.value.field == "html"
    write(tmp_path, {"pb/s/email.html.en.j2": top.replace(partial, html)})
    message, _ = StageRenderer(tmp_path, CHANNEL_CLASSES).render_message(
        PLAYBOOK, STAGE, sheet, "email", "en")
    assert "<script>" not in message.parts["html"] and "&lt;script&gt;x" in message.parts["html"]
