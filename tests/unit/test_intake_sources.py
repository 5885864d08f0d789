"""The sources file: mode 600, names, generated keys, rotation with a grace period, drill keys
refused in production, a cache that follows the file, and no secret anywhere but the file."""

from __future__ import annotations

import os
import stat
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from crisiscomms.core.errors import IntakeError
from crisiscomms.intake.contract import SourceKind
from crisiscomms.intake.signatures import secret_key
from crisiscomms.intake.sources import DRILL_SECRETS, SourceStore

PD_SECRET = "Zq3v8Kd0pR7mWn2xLc5tYb9hGf4jSa6e"


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "intake_sources.toml"


@pytest.fixture
def store(path: Path) -> SourceStore:
    return SourceStore(path, mode="production", default_rate_per_s=40.0)


def test_add_generates_the_right_key_per_kind_in_a_private_file(store: SourceStore,
                                                                 path: Path) -> None:
    ours = store.add("checkout-probe", SourceKind.events)
    token = store.add("prom_eu", "alertmanager", rate_per_s=5)
    assert len(secret_key(ours)) == 32
    assert len(token) >= 40 and not token.startswith("whsec_")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    fresh = SourceStore(path, default_rate_per_s=40.0)
    assert fresh.get("checkout-probe").secrets == (ours,)
    assert fresh.get("checkout-probe").rate_per_s == 40.0
    assert fresh.get("prom_eu").rate_per_s == 5.0
    assert fresh.get("prom_eu").kind is SourceKind.alertmanager
    assert [s.name for s in fresh.of_kind(SourceKind.events)] == ["checkout-probe"]


def test_no_secret_in_entries_reprs_or_errors(store: SourceStore, path: Path) -> None:
    keys = [store.add("a", "events"), store.add("b", "grafana"),
            store.add("c", "pagerduty", secret=PD_SECRET)]
    keys.append(store.rotate("b"))
    shown = " ".join([repr(store.entries()), str(store.entries()), repr(store),
                      repr(store.get("b")), str(store.get("a")), repr(store.of_kind(
                          SourceKind.grafana))])
    errors = []
    for call in (lambda: store.add("b", "grafana"), lambda: store.get("nope"),
                 lambda: store.find("a", SourceKind.recall),
                 lambda: store.rotate("b", secret="short"),
                 lambda: store.add("d", "events", secret=keys[0] + "x")):
        with pytest.raises(IntakeError) as info:
            call()
        errors.append(f"{info.value} {info.value.as_dict()}")
    for key in keys:
        assert key in path.read_text()
        assert key not in shown
        assert all(key not in e for e in errors)
    entry = {e.name: e for e in store.entries()}["b"]
    assert len(entry.keys) == 2 and entry.keys[0].expires_at is None


def test_a_file_others_may_read_is_refused(store: SourceStore, path: Path) -> None:
    store.add("a", "events")
    os.chmod(path, 0o644)
    with pytest.raises(IntakeError) as info:
        SourceStore(path).get("a")
    assert info.value.field == "intake_sources_path"
    assert "chmod 600" in str(info.value)


@pytest.mark.parametrize("name", ["", "Prom", "-x", "a" * 65, "../etc", "a b", "é"])
def test_names_that_cannot_be_in_a_url_are_refused(store: SourceStore, name: str) -> None:
    with pytest.raises(IntakeError) as info:
        store.add(name, "events")
    assert (info.value.status, info.value.field) == (422, "name")
    with pytest.raises(IntakeError) as unknown:
        store.get(name)
    assert (unknown.value.status, unknown.value.field) == (401, "source")


@pytest.mark.parametrize(("kind", "secret", "field"), [
    ("events", "not-a-whsec-secret-0123456789", "secret"),
    ("alertmanager", "short", "secret"),
    ("alertmanager", "has a space in the middle!", "secret"),
    ("pagerduty", None, "secret"),
    ("webhooks", None, "kind"),
])
def test_bad_keys_and_kinds_are_refused(store: SourceStore, path: Path, kind: str,
                                        secret: str | None, field: str) -> None:
    with pytest.raises(IntakeError) as info:
        store.add("x", kind, secret=secret)
    assert (info.value.status, info.value.field) == (422, field)
    assert not path.exists()  # nothing written


def test_rotation_keeps_the_previous_key_for_the_grace_period(store: SourceStore) -> None:
    first = store.add("feed", "recall")
    second = store.rotate("feed", grace_hours=24)
    assert store.get("feed").secrets == (second, first)
    third = store.rotate("feed", grace_hours=0)
    assert store.get("feed").secrets == (third,)
    assert len(store.entries()[0].keys) == 1  # expired keys leave the file


def test_the_previous_key_stops_verifying_when_its_grace_period_ends(
        store: SourceStore) -> None:
    first = store.add("prom", "alertmanager")
    second = store.rotate("prom", grace_hours=0.3 / 3600)
    assert store.get("prom").secrets == (second, first)
    expires = store.entries()[0].keys[1].expires_at
    assert expires is not None
    while datetime.now(UTC) <= expires:
        time.sleep(0.05)
    assert store.get("prom").secrets == (second,)  # the same file, recomputed at the expiry


def test_the_cache_follows_the_file(store: SourceStore, path: Path) -> None:
    store.add("a", "events")
    reader = SourceStore(path)
    assert reader.get("a") is reader.get("a")  # cached: one stat per call
    other = SourceStore(path)
    other.add("b", "grafana")
    new = other.rotate("a")
    assert reader.get("b").kind is SourceKind.grafana
    assert reader.get("a").secrets[0] == new
    other.remove("b")
    with pytest.raises(IntakeError):
        reader.get("b")


def test_drill_keys_are_refused_in_production_and_accepted_in_drills(path: Path) -> None:
    drill = SourceStore(path, mode="drill")
    for kind, key in DRILL_SECRETS.items():
        drill.add(f"drill-{kind.value}", kind, secret=key)
        assert drill.get(f"drill-{kind.value}").secrets == (key,)
    drill.check()
    production = SourceStore(path, mode="production")
    for kind, key in DRILL_SECRETS.items():
        assert production.get(f"drill-{kind.value}").secrets == ()  # verifies nothing
        with pytest.raises(IntakeError) as info:
            production.add(f"new-{kind.value}", kind, secret=key)
        assert (info.value.field, info.value.status) == ("secret", 422)
        assert key not in str(info.value)
    assert set(production.problems()) == {f"drill-{k.value}" for k in DRILL_SECRETS}
    with pytest.raises(IntakeError) as refused:
        production.check()
    assert refused.value.status == 503
    assert "drill-events" in str(refused.value)
    assert all(key not in str(refused.value) for key in DRILL_SECRETS.values())


def test_placeholders_are_refused_in_production(store: SourceStore) -> None:
    with pytest.raises(IntakeError, match="no source named x"):
        store.rotate("x", secret="changeme")  # the unknown source is named first
    store.add("x", "alertmanager")
    for placeholder in ("changeme", "CHANGE-ME"):
        with pytest.raises(IntakeError, match="placeholder"):
            store.rotate("x", secret=placeholder)


def test_unknown_and_wrong_kind_sources_are_401(store: SourceStore) -> None:
    store.add("prom", "alertmanager")
    for call in (lambda: store.get("nope"), lambda: store.find("prom", SourceKind.grafana)):
        with pytest.raises(IntakeError) as info:
            call()
        assert (info.value.status, info.value.field) == (401, "source")
    assert store.find("prom", SourceKind.alertmanager).name == "prom"


def test_a_missing_file_is_no_sources(store: SourceStore) -> None:
    assert store.entries() == []
    assert store.of_kind(SourceKind.events) == ()


def test_a_hand_edited_file_is_read_and_checked(path: Path) -> None:
    path.parent.mkdir(parents=True)
    path.write_text('[sources.prom]\nkind = "alertmanager"\n\n[[sources.prom.keys]]\n'
                    f'secret = "{PD_SECRET}"\ncreated_at = 2026-01-01T00:00:00Z\n'
                    f'[[sources.prom.keys]]\nsecret = "{PD_SECRET}-old"\n'
                    'created_at = 2025-01-01T00:00:00Z\nexpires_at = 2025-02-01T00:00:00Z\n')
    os.chmod(path, 0o600)
    assert SourceStore(path).get("prom").secrets == (PD_SECRET,)  # the expired key is out
    path.write_text('[sources.prom]\nkind = "nagios"\n')
    with pytest.raises(IntakeError) as info:
        SourceStore(path).get("prom")
    assert info.value.field == "intake_sources_path"
    assert "kind" in str(info.value)
