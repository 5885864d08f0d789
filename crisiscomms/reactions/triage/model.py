"""The sentiment model: a linear model over word n-grams, lexicon and cue features, numpy only.

Why this shape: it must score ≥ 20,000 short texts/s on one core, ship as a small file inside
the package, and load without pickle (``np.load(allow_pickle=False)``: no code in the file).
Training (``training.py``, scikit-learn, the ``train`` dependency group) writes the same file.

File (``.npz``): ``vocab`` (UTF-8, one feature a line; row 0 is the empty feature with zero
weights), ``weights`` float32 [features × 3] (negative, neutral, positive), ``bias`` [3],
``lexicon_words``/``lexicon_values`` (VADER's lexicon, MIT, carried with the model so model and
lexicon always match), ``meta`` (UTF-8 JSON: decision threshold, data pins, figures).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

CLASSES = ("negative", "neutral", "positive")
SHIPPED = "sentiment_model.npz"
"""The file beside this module (retrain with ``crisiscomms reactions train``)."""
NEGATORS = frozenset({"not", "no", "never", "t", "nobody", "nothing", "cannot", "cant", "dont",
                      "wont", "isnt", "nor", "none", "without", "neither", "nowhere"})
"""Words (after tokenizing: "don't" → "don", "t") that flip the lexicon words following them."""
CUE_FEATURES = ("complaint", "safety", "legal", "press", "caps", "exclaims", "questions")
"""Kinds of cue matched, and shapes of the raw text (``text.shapes``), each a feature."""
REACTION_PRIOR = (0.55, 0.30, 0.15)
"""Class prior (negative, neutral, positive) of the texts triage scores in production: reactions
addressed to the company during an incident (replies, mentions, tickets, CSAT comments). The
training data (general tweets and review snippets) is about a third of each class; people who
write to a company while it is having an incident mostly report a problem or complain, some ask
a question, few say thanks. A domain-knowledge setting, not fitted on any labelled set: the
model's probabilities are moved from the training prior (``meta["train_prior"]``) to this one
(the standard label-shift correction: add log(prior / train prior) to the logits), and the
decision threshold is tuned on the non-airline tune split weighted to this prior
(docs/triage.md)."""
_ZEROS = itertools.repeat(0)


def features(words: Sequence[str], cue_kinds: Iterable[str],
             lexicon: Mapping[str, float]) -> list[str]:
    """The model's features of one text: unigrams, bigrams, binned lexicon valences (negated
    within three words of a negator) and the kinds of cue matched (``~cue:complaint``)."""
    feats = list(words)
    feats.extend([f"{a} {b}" for a, b in itertools.pairwise(words)])
    last_negator = -10
    for i, w in enumerate(words):
        if w in NEGATORS:
            last_negator = i
            continue
        value = lexicon.get(w)
        if value is not None:
            bin_ = max(-4, min(4, round(value)))
            feats.append(f"~neglex{bin_:+d}" if i - last_negator <= 3 else f"~lex{bin_:+d}")
    feats.extend(f"~cue:{kind}" for kind in cue_kinds if kind in CUE_FEATURES)
    return feats


@dataclass
class SentimentModel:
    """Loaded model: ``predict_proba`` of a batch of feature lists."""

    index: dict[str, int]
    weights: np.ndarray
    bias: np.ndarray
    lexicon: dict[str, float]
    meta: dict[str, Any]
    _tables: _WordTables | None = field(default=None, init=False, repr=False)

    @property
    def prior_shift(self) -> np.ndarray:
        """Added to the logits: log(REACTION_PRIOR / the training prior); zeros for a model
        without ``meta["train_prior"]`` (or with ``meta["reaction_prior"]`` null)."""
        train_prior = self.meta.get("train_prior")
        target = self.meta.get("reaction_prior", REACTION_PRIOR)
        if not train_prior or not target:
            return np.zeros(3, dtype=np.float64)
        return np.log(np.asarray(target, dtype=np.float64)
                      / np.asarray(train_prior, dtype=np.float64))

    @property
    def negative_threshold(self) -> float:
        """P(negative) at or above which a text is negative (tuned on non-airline data)."""
        return float(self.meta.get("negative_threshold", 0.5))

    def predict_proba(self, batch: Sequence[Sequence[str]]) -> np.ndarray:
        """[len(batch) × 3] probabilities (negative, neutral, positive)."""
        if not batch:
            return np.zeros((0, 3), dtype=np.float32)
        get = self.index.get
        ids: list[int] = []
        offsets: list[int] = []
        for feats in batch:
            offsets.append(len(ids))
            ids.append(0)  # every text has a row, so reduceat never sees an empty segment
            # a feature counts once (training saw presence), row 0 (zeros) for unknown ones
            ids.extend(set(map(get, feats, _ZEROS)))
        logits = np.add.reduceat(self.weights[np.asarray(ids, dtype=np.int64)],
                                 np.asarray(offsets, dtype=np.int64), axis=0) + self.bias
        return _softmax(logits + self.prior_shift)

    def predict_words(self, words: Sequence[Sequence[str]],
                      cue_kinds: Sequence[Iterable[str]]) -> np.ndarray:
        """The same probabilities as ``predict_proba(features(...))``, from the texts' words,
        computed for the whole batch at once in numpy (the hot path of ``Triager.score``):
        one dictionary look-up per word, then array operations for bigrams, lexicon valences
        and negation windows instead of building feature strings."""
        n = len(words)
        if not n:
            return np.zeros((0, 3), dtype=np.float32)
        t = self.tables
        get, unknown = t.word_id.get, t.unknown
        flat: list[int] = []
        lengths: list[int] = []
        for ws in words:
            flat.extend(map(get, ws, itertools.repeat(unknown)))
            lengths.append(len(ws))
        ids = np.asarray(flat, dtype=np.int64)
        owner = np.repeat(np.arange(n, dtype=np.int64), lengths)
        rows = [t.unigram_row[ids]]
        owners = [owner]
        if len(ids) > 1 and len(t.bigram_keys):
            same = owner[1:] == owner[:-1]
            keys = ids[:-1][same] * t.width + ids[1:][same]
            at = np.searchsorted(t.bigram_keys, keys)
            at[at >= len(t.bigram_keys)] = 0
            hit = t.bigram_keys[at] == keys
            rows.append(np.where(hit, t.bigram_rows[at], 0))
            owners.append(owner[:-1][same])
        # lexicon, negated within three words after a negator of the same text
        position = np.arange(len(ids), dtype=np.int64)
        starts = np.repeat(np.cumsum([0, *lengths[:-1]]), lengths)
        negator = t.negator[ids]
        last = np.maximum.accumulate(np.where(negator, position, -10))
        negated = (last >= starts) & (position - last <= 3)
        lex = np.where(negated, t.neglex_row[ids], t.lex_row[ids])
        rows.append(np.where(negator, 0, lex))
        owners.append(owner)
        for i, kinds in enumerate(cue_kinds):
            for kind in kinds:
                cue_row = self.index.get(f"~cue:{kind}")
                if cue_row is not None:
                    rows.append(np.asarray([cue_row]))
                    owners.append(np.asarray([i]))
        all_rows, all_owners = np.concatenate(rows), np.concatenate(owners)
        pairs = np.sort(all_owners * len(self.weights) + all_rows)
        if pairs.size:  # a batch of texts without a word (empty CSAT comments) has no pairs
            pairs = pairs[np.concatenate(([True], pairs[1:] != pairs[:-1]))]  # presence
        who, row = np.divmod(pairs, len(self.weights))
        logits = np.empty((n, 3), dtype=np.float64)
        for c in range(3):
            logits[:, c] = np.bincount(who, weights=self.weights[row, c], minlength=n)
        return _softmax(logits + self.bias + self.prior_shift)

    @property
    def tables(self) -> _WordTables:
        """Integer look-up tables of the vocabulary (built once, on first use)."""
        if self._tables is None:
            self._tables = _WordTables.build(self)
        return self._tables

    def labels(self, proba: np.ndarray) -> list[str]:
        """Decide: negative at the tuned threshold, else the likelier of neutral/positive."""
        neg = proba[:, 0] >= self.negative_threshold
        pos = proba[:, 2] > proba[:, 1]
        return ["negative" if n else "positive" if p else "neutral"
                for n, p in zip(neg.tolist(), pos.tolist(), strict=True)]

    def save(self, path: Path) -> None:
        """Write the model file (compressed, no pickle)."""
        vocab = sorted(self.index, key=self.index.__getitem__)
        words = list(self.lexicon)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as fh:
            np.savez_compressed(
                fh, vocab=_utf8_lines(vocab), weights=self.weights.astype(np.float32),
                bias=self.bias.astype(np.float32), lexicon_words=_utf8_lines(words),
                lexicon_values=np.asarray([self.lexicon[w] for w in words], dtype=np.float32),
                meta=np.frombuffer(json.dumps(self.meta, sort_keys=True).encode(), np.uint8))

    @classmethod
    def read(cls, path: Path) -> SentimentModel:
        """Read a model file; a file of another shape is a clear error."""
        with np.load(path, allow_pickle=False) as z:
            vocab = _lines(z["vocab"])
            weights, bias = z["weights"], z["bias"]
            if weights.shape != (len(vocab), 3) or bias.shape != (3,) or vocab[:1] != [""]:
                raise ValueError(f"{path}: not a triage sentiment model (shapes "
                                 f"{weights.shape}, {bias.shape})")
            lexicon_words = _lines(z["lexicon_words"]) if z["lexicon_words"].size else []
            lexicon = dict(zip(lexicon_words,
                               z["lexicon_values"].astype(float).tolist(), strict=True))
            meta = json.loads(bytes(z["meta"]).decode())
        return cls(index={f: i for i, f in enumerate(vocab)}, weights=weights, bias=bias,
                   lexicon=lexicon, meta=meta)


def _softmax(logits: np.ndarray) -> np.ndarray:
    logits = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(logits)
    out: np.ndarray = exp / exp.sum(axis=1, keepdims=True)
    return out


@dataclass
class _WordTables:
    """The model's features as integer tables over a word id per known word."""

    word_id: dict[str, int]
    unknown: int
    width: int
    unigram_row: np.ndarray
    bigram_keys: np.ndarray
    bigram_rows: np.ndarray
    lex_row: np.ndarray
    neglex_row: np.ndarray
    negator: np.ndarray

    @classmethod
    def build(cls, model: SentimentModel) -> _WordTables:
        index = model.index
        words: dict[str, int] = {}
        for feature in index:
            if feature and not feature.startswith("~"):
                for w in feature.split(" "):
                    words.setdefault(w, len(words))
        for w in (*model.lexicon, *NEGATORS):
            words.setdefault(w, len(words))
        unknown = len(words)
        size = unknown + 1
        unigram = np.zeros(size, dtype=np.int64)
        lex = np.zeros(size, dtype=np.int64)
        neglex = np.zeros(size, dtype=np.int64)
        negator = np.zeros(size, dtype=bool)
        for w, i in words.items():
            unigram[i] = index.get(w, 0)
            negator[i] = w in NEGATORS
            value = model.lexicon.get(w)
            if value is not None:
                bin_ = max(-4, min(4, round(value)))
                lex[i] = index.get(f"~lex{bin_:+d}", 0)
                neglex[i] = index.get(f"~neglex{bin_:+d}", 0)
        keys, rows = [], []
        for feature, row in index.items():
            if " " in feature and not feature.startswith("~"):
                a, b = feature.split(" ")
                keys.append(words[a] * size + words[b])
                rows.append(row)
        order = np.argsort(np.asarray(keys, dtype=np.int64), kind="stable")
        return cls(word_id=words, unknown=unknown, width=size, unigram_row=unigram,
                   bigram_keys=np.asarray(keys, dtype=np.int64)[order].reshape(-1),
                   bigram_rows=np.asarray(rows, dtype=np.int64)[order].reshape(-1),
                   lex_row=lex, neglex_row=neglex, negator=negator)


def _utf8_lines(items: Sequence[str]) -> np.ndarray:
    return np.frombuffer("\n".join(items).encode(), dtype=np.uint8)


def _lines(array: np.ndarray) -> list[str]:
    return bytes(array).decode().split("\n")


def shipped_path() -> Path:
    """Where the shipped model file is (inside the installed package)."""
    return Path(str(resources.files(__package__).joinpath(SHIPPED)))


@lru_cache(maxsize=4)
def load(path: Path | None = None) -> SentimentModel | None:
    """The model at ``path`` (default: the shipped one), read once per process; None when
    there is no shipped model (triage then falls back to cues and lexicon only)."""
    target = path or shipped_path()
    if path is None and not target.is_file():
        return None
    return SentimentModel.read(target)
