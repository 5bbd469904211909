"""The CLI's listings at 80 columns: every id a person copies into the next command (task ids,
post ids, file paths) is printed whole on one line, and long text goes on lines of its own.
Rendered with sample rows, no server."""
from __future__ import annotations

from datetime import datetime

import pytest
from rich.text import Text

from streams.cli.review import TEXT_CHARS, review_table
from streams.cli.tables import INDENT, RecordTable, render_text

WIDTH = 80
LONG_TEXT = ("I will find you and you will regret it, said the villain in the third act of a play "
             "that nobody watched because it rained all day; the understudy read the part twice. ")


def _task(n: int, **fields) -> dict:
    # the review_tasks columns streams.query.review.pending_tasks returns
    task = {
        "task_id": f"{1718000000000 + n}-{n:012x}",  # agents' review_task_id: <13-digit ms>-<12 hex>
        "queue": "moderation", "created_at": datetime(2024, 6, 10, 12, 0, n),
        "priority": "URGENT" if n % 2 else "NORMAL",
        "post_id": f"6f1c54e2-4a9f-5b83-9d0e-2b7c31a8{n:04x}",  # a UUID post id: 36 characters
        "comment_id": None, "author_id": "se-u7",
        "scores": {"threat": 0.91, "insult": 0.40, "toxic": 0.30, "obscene": 0.05},
        "reasons": ["fast tier unsure: threat 0.91 between the thresholds 0.35 and 0.95",
                    "heavy tier unsure: MiniLM stack 0.62"],
        "text": LONG_TEXT * 3, "media_uri": None, "status": "PENDING",
    }
    return task | fields


@pytest.fixture
def tasks() -> list[dict]:
    return [
        _task(1),
        _task(2, queue="copyright", comment_id="se-c123456", text=None,
              media_uri="file:///var/lib/pulse/media/uploads/2024/06/10/a-rather-long-file-name.mp4",
              reasons=["pdq distance 38 of reference rh-7 is between the match and review radii"]),
        _task(3, scores={}, reasons=None, text="short"),
    ]


def test_review_list_prints_every_task_and_post_id_whole_on_one_line_at_80_columns(tasks):
    out = render_text(review_table(tasks), WIDTH)
    lines = out.splitlines()
    assert max(len(line) for line in lines) <= WIDTH
    for t in tasks:
        assert any(t["task_id"] in line for line in lines), t["task_id"]
        assert any(t["post_id"] in line for line in lines), t["post_id"]
    assert any("se-c123456" in line for line in lines)
    assert any(tasks[1]["media_uri"] in line for line in lines)
    # each task's line carries its queue, creation time and priority next to the id
    first = next(line for line in lines if tasks[0]["task_id"] in line)
    assert first.split() == [tasks[0]["task_id"], "moderation", "2024-06-10", "12:00:01", "URGENT"]


def test_review_list_puts_long_text_on_indented_lines_below_the_task(tasks):
    out = render_text(review_table(tasks), WIDTH)
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if tasks[0]["task_id"] in line)
    end = next(i for i, line in enumerate(lines) if tasks[1]["task_id"] in line)
    details = lines[start + 1:end]
    assert details and all(line.startswith(" " * INDENT) for line in details)
    assert details[0].split() == ["post", tasks[0]["post_id"]]
    assert details[1].split() == ["scores", "threat", "0.91,", "insult", "0.40,", "toxic", "0.30"]
    words = " ".join(details).split()
    assert " ".join(words).count("heavy tier unsure: MiniLM stack 0.62") == 1
    # the text is cut after TEXT_CHARS characters, wrapped over several lines
    assert "text" in words and words[-1].endswith("…")
    shown = " ".join(words[words.index("text") + 1:])
    assert shown.rstrip("…") == " ".join(tasks[0]["text"][:TEXT_CHARS].split())


def test_review_list_leaves_out_empty_details(tasks):
    out = render_text(review_table(tasks[2:]), WIDTH)
    assert "scores" not in out and "reasons" not in out and "media" not in out
    assert "text short" in " ".join(out.split())


def test_an_id_wider_than_the_terminal_folds_and_is_never_cut():
    table = RecordTable("listing")
    table.add_column("id")
    table.add_column("n", justify="right")
    long_id = "x" * 50 + "y" * 50
    table.add_row(long_id, "7", details=[("path", "/" + "z" * 120)])
    table.add_row("short", "12345")
    out = render_text(table, 60)
    assert "…" not in out
    assert "".join(out.split()).count(long_id) == 1
    assert "".join(out.split()).count("/" + "z" * 120) == 1
    assert all(len(line) <= 60 for line in out.splitlines())
    # columns that cannot fit are not padded to the id's width
    assert "short  12345" in out.splitlines()


def test_record_table_aligns_columns_and_refuses_a_wrong_number_of_cells():
    table = RecordTable()
    for header in ("a", "bb", "c"):
        table.add_column(header)
    table.add_column("n", justify="right")
    table.add_row("1234", Text("x", style="red"), "end", "7")
    table.add_row("1", "yyyyy", "end", "12345")
    lines = render_text(table, WIDTH).splitlines()
    assert lines[0].index(" c ") + 1 == lines[1].index("end") == lines[2].index("end") == 13
    assert [line.rstrip()[-5:] for line in lines] == ["    n", "    7", "12345"]
    with pytest.raises(ValueError, match="2 cells for 4 columns"):
        table.add_row("1", "2")
