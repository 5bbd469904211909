"""Labelled and unlabelled text for training and evaluating the text tiers.

Labelled files (``read_labelled``), detected by their columns:

- Davidson et al. 2017 CSV: columns ``tweet`` and ``class`` (0 hate speech, 1 offensive,
  2 neither), as ``../shared/data/davidson/labeled_dev.csv``;
- review-decision exports, CSV with columns ``text,class`` or JSON Lines with objects
  ``{"text": ..., "class": ...}``; ``class`` is 0/1/2 or a name: ``hate``, ``harassment`` (or
  ``offensive``, ``insult``), ``none`` (or ``neither``, ``allow``).

Unlabelled text (``read_unlabelled``) for distillation: a Stack Exchange dump directory (``Posts.xml``
titles and bodies with HTML stripped, ``Comments.xml`` texts), one such XML file, a ``.txt`` file
(one text per line), or a CSV/JSONL with a ``text`` column.

The train / validation / test split (``split_rows``) is deterministic and stratified: rows are keyed
by a hash of their normalised text (``text_key``), each class's distinct keys are ordered by
``sha256(seed:key)`` and cut at the fractions. Identical texts always land in the same split, so a
test tweet never has a copy in training.
"""

from __future__ import annotations

import csv
import hashlib
import html
import json
import re
from dataclasses import dataclass
from pathlib import Path
from xml.etree import ElementTree

from models.moderation.policy import TEXT_CLASSES

CLASS_NAMES = {"hate": 0, "hate_speech": 0, "harassment": 1, "offensive": 1, "insult": 1,
               "none": 2, "neither": 2, "allow": 2}


class DataError(ValueError):
    """A data file is missing, empty, or without the needed columns; the message says which."""


@dataclass(frozen=True)
class LabelledText:
    """One labelled text: ``label`` 0 hate, 1 harassment/offensive, 2 none; ``source`` the file."""

    text: str
    label: int
    source: str


def text_key(text: str) -> str:
    """Identity of a text for splitting and de-duplication: sha256 hex (first 16) of the text
    lower-cased with whitespace collapsed."""
    norm = " ".join(text.lower().split())
    return hashlib.sha256(norm.encode("utf-8")).hexdigest()[:16]


def _label(value, where: str) -> int:
    s = str(value).strip().lower()
    if s in CLASS_NAMES:
        return CLASS_NAMES[s]
    if s in ("0", "1", "2"):
        return int(s)
    raise DataError(f"{where}: class must be 0, 1, 2 or one of {sorted(CLASS_NAMES)}, got {value!r}")


def read_labelled(path: str | Path) -> list[LabelledText]:
    """Read one labelled file (Davidson CSV, ``text,class`` CSV, or JSONL).

    Raises
    ------
    DataError : no such file, no rows, missing columns, or a bad class value (with its line).
    """
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: no such file")
    rows: list[LabelledText] = []
    if p.suffix.lower() in (".jsonl", ".ndjson"):
        with p.open(encoding="utf-8") as f:
            for i, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                    rows.append(LabelledText(str(obj["text"]), _label(obj["class"], f"{p}:{i}"), p.name))
                except (json.JSONDecodeError, KeyError, TypeError) as err:
                    raise DataError(f"{p}:{i}: expected {{\"text\": ..., \"class\": ...}} ({err})") from err
    else:
        with p.open(encoding="utf-8", newline="") as f:
            reader = csv.DictReader(f)
            cols = reader.fieldnames or []
            text_col = "tweet" if "tweet" in cols else "text" if "text" in cols else None
            if text_col is None or "class" not in cols:
                raise DataError(f"{p}: needs columns `tweet,class` (Davidson) or `text,class`; has {cols}")
            for i, r in enumerate(reader, 2):
                rows.append(LabelledText(r[text_col], _label(r["class"], f"{p}:{i}"), p.name))
    if not rows:
        raise DataError(f"{p}: no rows")
    return rows


_TAG = re.compile(r"<[^>]+>")
_CODE = re.compile(r"<pre[^>]*>.*?</pre>", re.S)


def strip_html(body: str) -> str:
    """Text of a Stack Exchange HTML body: code blocks dropped, tags removed, entities decoded,
    whitespace collapsed."""
    return " ".join(html.unescape(_TAG.sub(" ", _CODE.sub(" ", body))).split())


def _stackexchange(xml: Path) -> list[str]:
    out = []
    for _, el in ElementTree.iterparse(xml, events=("end",)):
        if el.tag != "row":
            continue
        for attr in ("Title", "Body", "Text"):
            v = el.get(attr)
            if v:
                t = strip_html(v) if attr == "Body" else " ".join(v.split())
                if t:
                    out.append(t)
        el.clear()
    return out


def read_unlabelled(source: str | Path) -> list[str]:
    """Texts for distillation (see the module docstring for the accepted forms), de-duplicated in
    first-seen order.

    Raises
    ------
    DataError : nothing readable at ``source``.
    """
    p = Path(source)
    texts: list[str] = []
    if p.is_dir():
        for name in ("Posts.xml", "Comments.xml"):
            if (p / name).is_file():
                texts += _stackexchange(p / name)
    elif p.is_file() and p.suffix.lower() == ".xml":
        texts = _stackexchange(p)
    elif p.is_file() and p.suffix.lower() == ".txt":
        texts = [line.strip() for line in p.read_text(encoding="utf-8").splitlines() if line.strip()]
    elif p.is_file() and p.suffix.lower() in (".jsonl", ".ndjson"):
        texts = [str(json.loads(line)["text"]) for line in p.read_text(encoding="utf-8").splitlines()
                 if line.strip()]
    elif p.is_file():
        with p.open(encoding="utf-8", newline="") as f:
            reader = csv.DictReader(f)
            col = next((c for c in ("text", "tweet") if c in (reader.fieldnames or [])), None)
            if col is None:
                raise DataError(f"{p}: an unlabelled CSV needs a `text` column")
            texts = [r[col] for r in reader]
    else:
        raise DataError(f"{p}: no such file or directory")
    seen, out = set(), []
    for t in texts:
        k = text_key(t)
        if t.strip() and k not in seen:
            seen.add(k)
            out.append(t)
    if not out:
        raise DataError(f"{p}: no texts found (expected Posts.xml/Comments.xml, .txt, .csv or .jsonl)")
    return out


@dataclass(frozen=True)
class Split:
    """Row indices of each part of a split (into the list given to :func:`split_rows`)."""

    train: list[int]
    validation: list[int]
    test: list[int]


def split_rows(rows: list[LabelledText], seed: int, fractions=(0.70, 0.15, 0.15)) -> Split:
    """Deterministic stratified split into train / validation / test (see the module docstring).

    A text that occurs several times (possibly with different labels) is assigned by its first
    occurrence's class, and all its copies go to the same part.
    """
    first_class: dict[str, int] = {}
    for r in rows:
        first_class.setdefault(text_key(r.text), r.label)
    part: dict[str, int] = {}
    for c in range(len(TEXT_CLASSES)):
        keys = sorted((k for k, v in first_class.items() if v == c),
                      key=lambda k: hashlib.sha256(f"{seed}:{k}".encode()).hexdigest())
        n = len(keys)
        n_train = round(n * fractions[0])
        n_val = round(n * fractions[1])
        for i, k in enumerate(keys):
            part[k] = 0 if i < n_train else 1 if i < n_train + n_val else 2
    out: tuple[list[int], list[int], list[int]] = ([], [], [])
    for i, r in enumerate(rows):
        out[part[text_key(r.text)]].append(i)
    return Split(*out)
