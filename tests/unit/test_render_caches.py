"""What the trigger's caches keep and what they never keep: a template's compiled code is
reused only for the same text, and a signature verified once verifies again only for the same
key, signature and fields."""

from __future__ import annotations

from pathlib import Path

from crisiscomms.identity.keys import ApproverKey, KeyRegistry, generate_key
from crisiscomms.render.environment import make_environment, recipient_fields_in


def test_an_edited_template_renders_its_new_text(tmp_path: Path) -> None:
    name = "outage/acknowledge/x.text.en.j2"
    path = tmp_path / name
    path.parent.mkdir(parents=True)
    path.write_text("We are looking into {{ component }}.", encoding="utf-8")
    first = make_environment(tmp_path).get_template(name).render(component="the API")
    path.write_text("{{ component }} is down; we are on it.", encoding="utf-8")
    again = make_environment(tmp_path).get_template(name).render(component="the API")
    assert (first, again) == ("We are looking into the API.", "the API is down; we are on it.")
    path.write_text("We are looking into {{ component }}.", encoding="utf-8")
    assert make_environment(tmp_path).get_template(name).render(component="X") == \
        "We are looking into X."


def test_recipient_fields_follow_the_text() -> None:
    assert recipient_fields_in("Hi {{ recipient.first_name }}") == frozenset({"first_name"})
    assert recipient_fields_in("{{ recipient['plan'] }} {{ facts.x }}") == frozenset({"plan"})
    assert recipient_fields_in("Hello") == frozenset()


def _registry(tmp_path: Path, key_id: str, public: bytes) -> KeyRegistry:
    folder = tmp_path / "_approvers"
    folder.mkdir(parents=True, exist_ok=True)
    entry = ApproverKey(id=key_id, display_name="Dana", public_key=public,
                        may_sign=frozenset({"final", "provisional"}))
    (folder / f"{key_id}.toml").write_text(entry.toml(), encoding="utf-8")
    return KeyRegistry(folder)


def test_a_verified_signature_is_trusted_only_as_it_was(tmp_path: Path) -> None:
    key = generate_key("dana")
    registry = _registry(tmp_path, "dana", key.public_key)
    payload = {"template": "outage/acknowledge/x.text.en.j2", "sha256": "a" * 64}
    signature = key.sign(payload)
    assert registry.verify("dana", payload, signature, kind="final") is None
    assert registry.verify("dana", payload, signature, kind="final") is None  # the cached way
    assert registry.verify("dana", {**payload, "sha256": "b" * 64}, signature) is not None
    other = generate_key("dana").sign(payload)
    assert registry.verify("dana", payload, other) is not None
    # the same signature under a key listed anew (a replaced key) verifies against that key
    replaced = _registry(tmp_path / "next", "dana", generate_key("dana").public_key)
    assert replaced.verify("dana", payload, signature) is not None
