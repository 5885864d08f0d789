"""The subscription confirmation email rendered from templates compiled once
(``ConfirmationTemplates``): the same message and content hash as a fresh render, and every use
still checked against the approvals lock, so an edit after approval is refused at the next
email, a re-approved text is used at once, and a partial it includes is covered too."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from approvers import approve_all

from crisiscomms.audience import subscriptions as subs
from crisiscomms.core.errors import ApprovalError
from crisiscomms.render.approvals import ApprovalLock

SUBSCRIBE = Path(subs.TEMPLATE_DIR)
VALUES: dict[str, Any] = {
    "channel": "email", "organization": "Example Corp", "page_name": "Example Status",
    "confirm_url": "https://status.example.org/v1/confirm/abc",
    "unsubscribe_url": "https://status.example.org/v1/unsubscribe/def",
    "components": ["API"]}


@pytest.fixture
def tdir(tmp_path: Path) -> Path:
    root = tmp_path / "templates"
    folder = root / SUBSCRIBE
    folder.mkdir(parents=True)
    (folder / "email.subject.en.j2").write_text("Confirm your {{ page_name }} subscription")
    (folder / "email.text.en.j2").write_text(
        "{% include '_statuspage/subscribe/_sign.j2' %}: {{ confirm_url }} "
        "({{ components | join(', ') }}) stop: {{ unsubscribe_url }}")
    (folder / "email.html.en.j2").write_text("<p><a href=\"{{ confirm_url }}\">Confirm</a></p>")
    (folder / "email.text.de.j2").write_text("Bestätigen: {{ confirm_url }}")
    (folder / "email.subject.de.j2").write_text("Bestätigen")
    (folder / "email.html.de.j2").write_text("<p>{{ confirm_url }}</p>")
    (folder / "_sign.j2").write_text("{{ organization }} asks")
    approve_all(root, tmp_path, kind="provisional")
    return root


def test_a_compiled_template_renders_what_a_fresh_one_does(tdir: Path) -> None:
    lock = ApprovalLock(tdir)
    templates = subs.ConfirmationTemplates(tdir, lock)
    for locale, chosen in (("en", "en"), ("de-AT", "de"), ("fr", "en")):
        fresh = subs.confirmation_message(tdir, locale=locale, approvals=lock, **VALUES)
        for _ in range(2):  # compiled on the first use, reused on the second
            message = templates.message(locale=locale, **VALUES)
            assert message == fresh and message.locale == chosen
    text = templates.message(locale="en", **VALUES).parts["text"]
    assert text.startswith("Example Corp asks: https://status.example.org/v1/confirm/abc (API)")


def test_an_edit_after_approval_is_refused_at_the_next_email(tdir: Path) -> None:
    templates = subs.ConfirmationTemplates(tdir, ApprovalLock(tdir))
    before = templates.message(locale="en", **VALUES)
    partial = tdir / SUBSCRIBE / "_sign.j2"
    partial.write_text("{{ organization }} insists")  # the included partial, not approved
    with pytest.raises(ApprovalError) as refused:
        templates.message(locale="en", **VALUES)
    assert refused.value.fields()["template"] == f"{subs.TEMPLATE_DIR}/_sign.j2"

    approve_all(tdir, tdir.parent, kind="provisional")  # approved again: a new lock
    again = subs.ConfirmationTemplates(tdir, ApprovalLock(tdir)).message(locale="en", **VALUES)
    assert again.parts["text"].startswith("Example Corp insists")
    assert again.content_hash != before.content_hash  # the partial's hash is covered
