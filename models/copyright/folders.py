"""Folders of media: which files count as media, and registering a folder of references (what
``pulse copyright match --references DIR`` and the evaluation do)."""

from __future__ import annotations

from os import PathLike
from pathlib import Path

from models.copyright.bank import ReferenceBank
from models.copyright.decision import Policy
from models.fingerprints import MediaError

MEDIA_SUFFIXES = frozenset(
    ".jpg .jpeg .png .webp .gif .bmp .tif .tiff "          # images
    ".wav .mp3 .flac .ogg .oga .opus .m4a .aac "           # audio
    ".mp4 .m4v .mov .mkv .webm .avi .mpg .mpeg .3gp".split()  # video
)
"""File name endings ``media_files`` treats as media; other files in a folder are ignored."""


def media_files(directory: str | PathLike[str]) -> list[Path]:
    """Media files under ``directory`` (recursively, sorted, hidden files skipped).

    Raises
    ------
    FileNotFoundError, NotADirectoryError : the folder is missing or not a folder.
    """
    root = Path(directory)
    if not root.exists():
        raise FileNotFoundError(f"{root}: no such folder")
    if not root.is_dir():
        raise NotADirectoryError(f"{root}: not a folder")
    return sorted(p for p in root.rglob("*")
                  if p.is_file() and p.suffix.lower() in MEDIA_SUFFIXES
                  and not any(part.startswith(".") for part in p.relative_to(root).parts))


def load_references(bank: ReferenceBank, files: list[Path], *, rights_holder_id: str = "",
                    policy: Policy = "BLOCK", on_file=None) -> list[tuple[Path, str]]:
    """Register each file (id = its stem; a repeated stem gets its parent folder's name as a
    prefix) and return ``[(path, reason)]`` for those that could not be fingerprinted.
    ``on_file(path)`` is called after each file (for a progress bar)."""
    stems = [p.stem for p in files]
    failed = []
    for path in files:
        rid = path.stem if stems.count(path.stem) == 1 else f"{path.parent.name}/{path.stem}"
        try:
            bank.register_file(path, rid, rights_holder_id=rights_holder_id, policy=policy)
        except MediaError as err:
            failed.append((path, str(err)))
        if on_file is not None:
            on_file(path)
    return failed
