"""Triage (issue 11): cue matching in every locale, the verdict shape, the shipped model, the
``reactions score`` / ``correct`` / ``train`` commands. Real SQLite files, no mocks."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from sqlmodel import Session, select
from typer.testing import CliRunner

from crisiscomms.cli import app
from crisiscomms.cli.reactions import BadLine, score_stream
from crisiscomms.core.database import init_db, make_engine
from crisiscomms.identity.models import AuditEvent
from crisiscomms.playbook.listening import Listening
from crisiscomms.reactions.models import Reaction, ReactionCorrection, ReactionSource, Sentiment
from crisiscomms.reactions.triage import Triager, Verdict
from crisiscomms.reactions.triage.corpora import Example, is_airline
from crisiscomms.reactions.triage.cues import CueMatcher
from crisiscomms.reactions.triage.model import SentimentModel
from crisiscomms.reactions.triage.text import fold, tokens

runner = CliRunner()
cues_only = Triager(use_model=False)


def reasons(text: str, triager: Triager = cues_only) -> tuple[str, ...]:
    return triager.score([text])[0].reasons


@pytest.mark.parametrize(("text", "expected"), [
    ("My son was INJURED by the charger", "safety: injur"),
    ("I'm calling my lawyer", "legal: lawyer"),
    ("journalist at the Times, a comment?", "press: journalist"),
    ("why is nobody answering?", "complaint: nobody answering"),
    ("Mi hijo sufrió una quemadura", "safety: quemadura"),
    ("voy a llamar a mi abogado", "legal: abogado"),
    ("Je suis journaliste au Monde", "press: journaliste"),
    ("personne ne RÉPOND", "complaint: personne ne repond"),
    ("Ich schalte meinen Anwalt ein", "legal: anwalt"),
    ("Das Ladegerät hat gebrannt", "safety: gebrannt"),
    ("充電器が発火しました", "safety: 発火"),
    ("弁護士に相談します", "legal: 弁護士"),
    ("記者です、取材させてください", "press: 記者"),
])
def test_default_cues_flag_every_locale_without_a_playbook(text: str, expected: str) -> None:
    verdict = cues_only.score([text])[0]
    assert expected in verdict.reasons and verdict.needs_human


@pytest.mark.parametrize("text", ["there is an issue with my login", "pursue the matter",
                                  "a firework show", "impressive work", "Barbara"])
def test_latin_cues_match_whole_words_only(text: str) -> None:
    assert reasons(text) == ()


def test_folding_is_case_and_accent_blind_but_keeps_japanese_voicing() -> None:
    assert fold("RÉFUND  Maßnahme") == "refund massnahme"
    assert fold("バグ") == "バグ"
    assert tokens(fold("Call @Bob: https://x.example/a 3 times!")) == [
        "call", "_user_", "_url_", "_num_", "times", "!"]


def test_playbook_cues_add_to_the_defaults_and_vip_is_a_reason() -> None:
    listening = Listening(cues={"en": {"safety": ["smouldering"]}, "ja": {"safety": ["焦げ"]}},
                          vip=["@BigCustomer", "@bigcorp.example"])
    t = Triager.for_playbook(listening)
    t.use_model = False
    assert reasons("it was smouldering", t) == ("safety: smouldering",)
    assert reasons("焦げ臭い", t) == ("safety: 焦げ",)
    assert reasons("lawyer", t) == ("legal: lawyer",)  # defaults still apply
    [v1, v2, v3] = t.score(["hello", "hi", "hey"],
                           authors=["@bigcustomer", "cto@bigcorp.example", "@someone"])
    assert v1.reasons == ("vip: @bigcustomer",) and v1.needs_human
    assert v2.needs_human and not v3.needs_human


def test_a_bad_cue_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"cues\.en\.gossip: unknown reason"):
        CueMatcher.compile({"en": {"gossip": ["x"]}})
    with pytest.raises(ValueError, match="an empty cue"):
        CueMatcher.compile({"en": {"safety": ["  "]}})


def test_verdict_shape_and_order() -> None:
    texts = ["Thank you, great job!", "still waiting 3 hours, I want a refund",
             "ok", "", "<script>alert(1)</script>\x00", "いつ直りますか？"]
    verdicts = Triager().score(texts)
    assert len(verdicts) == len(texts) and all(isinstance(v, Verdict) for v in verdicts)
    for v in verdicts:
        d = v.as_dict()
        assert set(d) == {"sentiment", "needs_human", "reasons", "language", "score"}
        assert d["sentiment"] in ("negative", "neutral", "positive")
        assert -1.0 <= v.score <= 1.0
    assert {"complaint: still waiting", "complaint: refund"} <= set(verdicts[1].reasons)
    assert verdicts[5].language == "ja"
    with pytest.raises(ValueError, match="2 texts but 1 authors"):
        Triager().score(["a", "b"], authors=["x"])


def test_the_shipped_model_loads_and_classifies_obvious_cases() -> None:
    t = Triager()
    model = t.sentiment_model()
    assert model is not None and model.meta["data"]["vaderSentiment"] == "3.3.2"
    [pos, neg, neu] = t.score(["I love this, thank you so much, amazing service!",
                               "This is terrible, the worst service ever, I hate it",
                               "The meeting is on Tuesday at 10"])
    assert pos.sentiment is Sentiment.positive and pos.score > 0.3
    assert neg.sentiment is Sentiment.negative and neg.score < -0.3
    assert neu.sentiment is Sentiment.neutral
    assert t.score(["still waiting 3 hours"])[0].sentiment is Sentiment.negative  # domain cue


def test_airline_hold_out_rule() -> None:
    assert is_airline("@united where is my bag") and is_airline("my Flight was late")
    assert not is_airline("my package is late")


def test_score_stream_keeps_order_across_batches_and_stops_at_a_bad_line() -> None:
    lines = [json.dumps({"id": i, "text": f"text number {i}"}) for i in range(7)]
    sink = io.StringIO()
    assert score_stream(io.StringIO("\n".join(lines) + "\n\n"), sink, Triager(), batch=3) == 7
    out = [json.loads(line) for line in sink.getvalue().splitlines()]
    assert [o["id"] for o in out] == list(range(7))
    bad = io.StringIO("\n".join([*lines[:4], '{"id": 9, "text": 5}', lines[5]]))
    sink = io.StringIO()
    with pytest.raises(BadLine, match='line 5: "text" must be a string'):
        score_stream(bad, sink, Triager(), batch=3)
    assert [json.loads(x)["id"] for x in sink.getvalue().splitlines()] == [0, 1, 2, 3]


def test_score_command_reads_jsonl_and_names_the_bad_line() -> None:
    stdin = ('{"id": "a", "text": "I will sue you"}\n'
             '{"id": 2, "text": "Thanks, all good now"}\n')
    result = runner.invoke(app, ["reactions", "score"], input=stdin)
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["id"] for r in rows] == ["a", 2]
    assert rows[0]["needs_human"] and rows[0]["reasons"] == ["legal: sue"]
    assert set(rows[1]) == {"id", "sentiment", "needs_human", "reasons", "language", "score"}
    result = runner.invoke(app, ["reactions", "score"], input=stdin + "not json\n")
    assert result.exit_code == 2
    assert "line 3: not JSON" in result.output
    assert len([x for x in result.stdout.splitlines() if x.startswith("{")]) == 2


def _workspace(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "crisiscomms.toml").write_text("")
    db = f"sqlite:///{tmp_path / 'ws.db'}"
    engine = make_engine(db)
    init_db(engine)
    with Session(engine) as s:
        s.add(Reaction(source=ReactionSource.x_mention, source_id="t1", author="@ann",
                       text="fine, I guess", sentiment=Sentiment.positive, needs_human=False))
        s.commit()
    engine.dispose()
    return {"CRISISCOMMS_WORKSPACE": str(tmp_path), "CRISISCOMMS_DATABASE_URL": db}


def test_correct_records_who_and_audits(tmp_path: Path) -> None:
    env = _workspace(tmp_path)
    result = runner.invoke(app, ["reactions", "correct", "1", "--sentiment", "negative",
                                 "--needs-human", "--by", "Dana"], env=env)
    assert result.exit_code == 0, result.output
    engine = make_engine(env["CRISISCOMMS_DATABASE_URL"])
    with Session(engine) as s:
        [row] = s.exec(select(ReactionCorrection)).all()
        assert row.sentiment == Sentiment.negative and row.needs_human and row.actor
        [event] = s.exec(select(AuditEvent).where(AuditEvent.action == "reaction.corrected"))
        detail = json.loads(event.detail_json)
        assert event.actor == row.actor and detail["reaction_id"] == 1
        assert detail["was_sentiment"] == "positive" and detail["was_needs_human"] is False
        reaction = s.get(Reaction, 1)
        assert reaction is not None
        assert reaction.sentiment == Sentiment.negative and reaction.needs_human
    result = runner.invoke(app, ["reactions", "correct", "99", "--sentiment", "neutral"],
                           env=env)
    assert result.exit_code == 2 and "no reaction 99" in result.output
    with Session(engine) as s:
        assert len(s.exec(select(ReactionCorrection)).all()) == 1
    engine.dispose()


def test_train_on_a_tiny_corpus_writes_only_a_better_model(tmp_path: Path) -> None:
    from crisiscomms.core.settings import Settings
    from crisiscomms.reactions.triage.train_run import run_training

    pytest.importorskip("sklearn")
    words = {"negative": ["awful", "broken", "hate", "bad"],
             "neutral": ["tuesday", "meeting", "table", "report"],
             "positive": ["love", "great", "thanks", "nice"]}
    public = [Example(f"{w} {v} item {i}", label, "tiny")
              for label, ws in words.items() for i in range(40) for w in ws for v in ws[:2]]
    env = _workspace(tmp_path)
    settings = Settings(_env_file=None, workspace=tmp_path,  # type: ignore[call-arg]
                        database_url=env["CRISISCOMMS_DATABASE_URL"],
                        triage_model_path=tmp_path / "model.npz")
    engine = make_engine(env["CRISISCOMMS_DATABASE_URL"])
    checked = run_training(settings, engine=engine, check=True, output=None, vader_sdist=None,
                           say=lambda _: None, public=public, airline=public[:5])
    assert checked["written"] is None and not (tmp_path / "model.npz").exists()
    first = run_training(settings, engine=engine, check=False, output=None, vader_sdist=None,
                         say=lambda _: None, public=public, airline=public[:5])
    assert first["written"] == str(tmp_path / "model.npz")
    assert first["candidate"]["macro_f1"] > 0.9
    model = SentimentModel.read(tmp_path / "model.npz")
    assert Triager(model=model).score(["hate awful"])[0].sentiment is Sentiment.negative
    again = run_training(settings, engine=engine, check=False, output=None, vader_sdist=None,
                         say=lambda _: None, public=public, airline=public[:5])
    assert not again["better"] and again["written"] is None  # same data: not better
    engine.dispose()


@pytest.mark.parametrize(("text", "language", "sentiment"), [
    ("Muchas gracias, excelente servicio", "es", Sentiment.positive),
    ("Das ist schrecklich und viel zu teuer", "de", Sentiment.negative),
    ("Merci, c'est parfait, super rapide", "fr", Sentiment.positive),
    ("ありがとうございます、助かりました", "ja", Sentiment.positive),
    ("La reunión es el martes a las diez", "es", Sentiment.neutral),
])
def test_other_languages_get_the_small_lexicon_not_the_english_model(
        text: str, language: str, sentiment: Sentiment) -> None:
    [verdict] = Triager().score([text])
    assert verdict.language == language and verdict.sentiment is sentiment
    assert (verdict.score > 0) == (sentiment is Sentiment.positive)


def test_score_with_a_playbook_uses_its_cues() -> None:
    root = Path(__file__).resolve().parents[2]
    stdin = '{"id": 1, "text": "sparks came out of the charger"}\n'
    plain = runner.invoke(app, ["reactions", "score"], input=stdin)
    assert json.loads(plain.stdout)["reasons"] == []
    recall = runner.invoke(app, ["reactions", "score", "--playbook", "product_recall"],
                           input=stdin, env={"CRISISCOMMS_WORKSPACE": str(root)})
    assert recall.exit_code == 0, recall.output
    assert json.loads(recall.stdout)["reasons"] == ["safety: spark"]
    unknown = runner.invoke(app, ["reactions", "score", "--playbook", "nope"], input=stdin,
                            env={"CRISISCOMMS_WORKSPACE": str(root)})
    assert unknown.exit_code == 2 and "unknown playbook 'nope'" in unknown.output


def test_a_batch_of_texts_without_words_is_scored_neutral() -> None:
    """Found by the drill's crowd: a batch of CSAT ratings without comments (empty texts, or
    only punctuation) crashed the model with an IndexError (a 500 at the receiver)."""
    verdicts = Triager().score(["", "", " ... "])
    assert [v.sentiment.value for v in verdicts] == ["neutral"] * 3
    assert not any(v.needs_human for v in verdicts)
