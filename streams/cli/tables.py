"""Listings the CLI prints, readable in an 80-column terminal.

A rich ``Table`` shares the terminal's width among all its columns: at 80 columns an eight-column
table leaves each column a few characters, and the ids a person copies into the next command
(task ids, post ids, file paths) break mid-id. :class:`RecordTable` prints a listing instead as

- one line per record with the short fields (ids, times, actions, counts) in aligned columns that
  never wrap; an id wider than the whole terminal folds onto the next line, never truncated;
- the record's long text (captions, reasons, paths, topic lists) on indented lines below it, each
  wrapped to the terminal's width.

The width is the printing console's: rich reads the ``COLUMNS`` environment variable when it
prints (tests set it), else the terminal's size, else 80.
"""
from __future__ import annotations

import io
from dataclasses import dataclass, field

from rich.cells import cell_len
from rich.console import Console, ConsoleOptions, RenderableType, RenderResult
from rich.padding import Padding
from rich.text import Text

#: Columns of spaces between two fields of a record's line.
GAP = 2
#: Columns of spaces before a record's detail lines.
INDENT = 4


@dataclass
class _Column:
    header: str
    justify: str = "left"
    style: str | None = None


@dataclass
class _Record:
    cells: tuple[str | Text, ...]
    details: list[tuple[str, str | Text]] = field(default_factory=list)


class RecordTable:
    """A titled listing: per record, one line of short fields and indented lines of long text.

    Use it like a rich ``Table``::

        t = RecordTable("2 pending review task(s)")
        t.add_column("task")
        t.add_column("queue")
        t.add_row("1718000000000-0a1b2c3d4e5f", "moderation",
                  details=[("post", "se-p12"), ("text", "a long caption ...")])
        console.print(t)

    Cells and detail texts are plain strings (printed as written, no rich markup) or rich
    ``Text``. A detail with an empty label is printed without one.
    """

    def __init__(self, title: str | None = None) -> None:
        self.title = title
        self.columns: list[_Column] = []
        self.records: list[_Record] = []

    def add_column(self, header: str, *, justify: str = "left", style: str | None = None) -> None:
        """A short-field column; ``justify`` is ``"left"`` or ``"right"`` (numbers)."""
        self.columns.append(_Column(header, justify, style))

    def add_row(self, *cells: str | Text,
                details: list[tuple[str, str | Text]] | None = None) -> None:
        """A record: one cell per column, then ``(label, text)`` lines printed below it."""
        if len(cells) != len(self.columns):
            raise ValueError(f"{len(cells)} cells for {len(self.columns)} columns")
        self.records.append(_Record(tuple(cells), [d for d in details or [] if d[1] != ""]))

    def __len__(self) -> int:
        return len(self.records)

    def _line(self, cells, widths: list[int], header: bool) -> Text:
        # fields padded to the listing's column widths, so records line up; on a terminal
        # narrower than the line, rich wraps it between fields (an id stays whole) and folds only
        # a field wider than the whole terminal
        line = Text(no_wrap=False, overflow="fold")
        last = len(cells) - 1
        for i, (column, width, cell) in enumerate(zip(self.columns, widths, cells)):
            text = cell.copy() if isinstance(cell, Text) else Text(str(cell))
            if header:
                text.stylize("bold")
            elif column.style:
                text.stylize(column.style)
            pad = " " * max(0, width - text.cell_len)
            if column.justify == "right":
                line.append(pad)
                line.append(text)
            else:
                line.append(text)
                if i < last:
                    line.append(pad)
            if i < last:
                line.append(" " * GAP)
        return line

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        widths = [max([cell_len(column.header)] + [_width(r.cells[i]) for r in self.records])
                  for i, column in enumerate(self.columns)]
        if sum(widths) + GAP * (len(widths) - 1) > options.max_width:
            # a record's line cannot fit whatever the padding: unpadded fields wrap more tidily
            widths = [0] * len(widths)
        if self.title:
            yield Text(self.title, style="italic")
        yield self._line([c.header for c in self.columns], widths, header=True)
        for record in self.records:
            yield self._line(record.cells, widths, header=False)
            for label, text in record.details:
                body = text.copy() if isinstance(text, Text) else Text(str(text))
                line = Text.assemble((label + " ", "dim"), body) if label else body
                line.overflow = "fold"  # a path wider than the terminal folds, never truncated
                yield Padding(line, (0, 0, 0, INDENT), expand=False)


def _width(cell: str | Text) -> int:
    return cell.cell_len if isinstance(cell, Text) else cell_len(str(cell))


def render_text(renderable: RenderableType, width: int = 80) -> str:
    """What ``renderable`` prints on a ``width``-column terminal, as plain text (no colours): for
    tests, and for checking a layout by eye."""
    buffer = io.StringIO()
    Console(file=buffer, width=width, color_system=None, highlight=False).print(renderable)
    return buffer.getvalue()
