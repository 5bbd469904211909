"""Labelled / unlabelled text readers and the deterministic stratified split."""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from models.moderation.datasets import (DataError, LabelledText, read_labelled, read_unlabelled,
                                        split_rows, strip_html, text_key)

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
DAVIDSON = DATA / "davidson" / "labeled_dev.csv"
SE = DATA / "stackexchange-quantumcomputing"


def test_review_exports_csv_and_jsonl(tmp_path):
    csv_file = tmp_path / "decisions.csv"
    csv_file.write_text('text,class\n"you are great",none\n"slur here",0\nwhat an idiot,harassment\n')
    jl = tmp_path / "decisions.jsonl"
    jl.write_text(json.dumps({"text": "a", "class": "offensive"}) + "\n\n"
                  + json.dumps({"text": "b", "class": 2}) + "\n")
    assert [(r.text, r.label) for r in read_labelled(csv_file)] == [
        ("you are great", 2), ("slur here", 0), ("what an idiot", 1)]
    assert [(r.text, r.label) for r in read_labelled(jl)] == [("a", 1), ("b", 2)]


@pytest.mark.parametrize("content, message", [
    ("text,label\nx,1\n", "needs columns"),
    ("text,class\nx,7\n", "class must be"),
    ("text,class\n", "no rows"),
])
def test_bad_labelled_files(tmp_path, content, message):
    f = tmp_path / "bad.csv"
    f.write_text(content)
    with pytest.raises(DataError, match=message):
        read_labelled(f)
    with pytest.raises(DataError, match="no such file"):
        read_labelled(tmp_path / "missing.csv")


def test_split_is_deterministic_stratified_and_keeps_copies_together():
    rows = [LabelledText(f"text {i}", i % 3, "t") for i in range(600)]
    rows += [LabelledText("Text 5  ", 2, "t"), LabelledText("text 5", 2, "t")]  # copies of "text 5"
    a, b = split_rows(rows, 7), split_rows(rows, 7)
    assert a == b
    assert split_rows(rows, 8) != a
    parts = [set(a.train), set(a.validation), set(a.test)]
    assert sum(map(len, parts)) == len(rows) and not (parts[0] & parts[1] or parts[1] & parts[2])
    where = {text_key(rows[i].text): k for k, part in enumerate(parts) for i in part}
    assert len({where[text_key(t)] for t in ("text 5", "Text 5  ")}) == 1
    counts = Counter(rows[i].label for i in a.test)
    assert all(abs(c - 30) <= 2 for c in counts.values())  # 15 % of each class's 200


def test_strip_html():
    assert strip_html("<p>A &amp; B</p><pre><code>x = 1</code></pre><b>c</b>") == "A & B c"


@pytest.mark.skipif(not DAVIDSON.is_file(), reason=f"real data absent: {DAVIDSON}")
def test_davidson_reads_all_rows():
    rows = read_labelled(DAVIDSON)
    assert len(rows) == 17276
    c = Counter(r.label for r in rows)
    assert c[0] < c[2] < c[1]  # hate is the small class


@pytest.mark.skipif(not SE.is_dir(), reason=f"real data absent: {SE}")
def test_stackexchange_dump_gives_plain_texts():
    texts = read_unlabelled(SE)
    assert len(texts) > 5000
    assert not any("<p>" in t for t in texts[:500])
    assert len(set(map(text_key, texts))) == len(texts)
