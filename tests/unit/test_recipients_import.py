"""CSV recipient import: addresses are stored lower-cased and compared lower-cased."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import insert
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from crisiscomms.audience.importer import import_csv
from crisiscomms.audience.models import Recipient
from crisiscomms.audience.subscriptions import normalise_email
from crisiscomms.core.database import migrate


def _emails(engine: Engine) -> list[str]:
    with Session(engine) as s:
        return sorted(s.exec(select(Recipient.email)).all())


def _csv(tmp_path: Path, *lines: str) -> Path:
    path = tmp_path / "r.csv"
    path.write_text("email,name\n" + "".join(f"{line}\n" for line in lines), encoding="utf-8")
    return path


def test_addresses_are_stored_lower_cased_like_subscriptions(engine: Engine, tmp_path) -> None:
    report = import_csv(engine, _csv(tmp_path, "Bob.Smith@Example.COM,Bob", "ann@x.com,Ann"))
    assert report.written and report.imported == 2 and not report.rejected
    assert _emails(engine) == ["ann@x.com", "bob.smith@example.com"]
    assert normalise_email("Bob.Smith@Example.COM") in _emails(engine)


def test_a_case_variant_of_a_known_recipient_is_rejected(engine: Engine, tmp_path) -> None:
    assert import_csv(engine, _csv(tmp_path, "bob@x.com,Bob")).imported == 1
    report = import_csv(engine, _csv(tmp_path, "ok@x.com,Ok", "BOB@X.com,Bob again"))
    assert report.rejected == [(3, "bob@x.com is already a recipient")]
    assert not report.written and _emails(engine) == ["bob@x.com"]


def test_case_variants_within_one_file_are_duplicates(engine: Engine, tmp_path) -> None:
    report = import_csv(engine, _csv(tmp_path, "Bob@x.com,A", "bob@X.COM,B"),
                        skip_invalid=True)
    assert report.rejected == [(3, "duplicate of line 2 (bob@x.com)")]
    assert _emails(engine) == ["bob@x.com"]


def test_a_mixed_case_address_stored_before_is_found_after_migration(tmp_path) -> None:
    """``Bob@x.com`` imported by an older version: the data migration folds it, and a new
    ``bob@x.com`` is then recognised as the same recipient."""
    from crisiscomms.core.database import init_db, make_engine

    engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    migrate(engine, "baseline")  # the schema before the data migration
    with Session(engine) as s:
        s.execute(insert(Recipient), [{"email": "Bob@x.com", "unsubscribe_token": "t1"},
                                      {"email": "Ann@x.com", "unsubscribe_token": "t2"},
                                      {"email": "ann@x.com", "unsubscribe_token": "t3"}])
        s.commit()
    init_db(engine)
    # Ann has a lower-case twin already: left for a human to merge, never a second twin
    assert _emails(engine) == ["Ann@x.com", "ann@x.com", "bob@x.com"]
    report = import_csv(engine, _csv(tmp_path, "bob@x.com,Bob", "ANN@X.COM,Ann"))
    assert report.rejected == [(2, "bob@x.com is already a recipient"),
                               (3, "ann@x.com is already a recipient")]
    engine.dispose()
