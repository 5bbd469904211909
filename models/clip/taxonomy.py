"""The platform category taxonomy (``models/clip/taxonomy.toml``): names, prompts, tags."""
from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

TAXONOMY_TOML = Path(__file__).with_name("taxonomy.toml")


@dataclass(frozen=True)
class Category:
    """One platform category: stable ``name``, human ``doc``, embedding ``prompts``, hashtag ``tags``."""

    name: str
    doc: str
    prompts: tuple[str, ...]
    tags: tuple[str, ...]


def load_taxonomy(path: Path | str = TAXONOMY_TOML) -> tuple[Category, ...]:
    """The categories of a taxonomy file, in file order.

    Raises ``ValueError`` for a category without prompts, or a file without categories.
    """
    with open(path, "rb") as f:
        doc = tomllib.load(f)
    cats = []
    for name, table in doc.get("categories", {}).items():
        prompts = tuple(table.get("prompts", ()))
        if not prompts or not all(isinstance(p, str) and p.strip() for p in prompts):
            raise ValueError(f"{path}: category {name!r} needs a non-empty list of prompt strings")
        tags = tuple(t.lstrip("#").lower() for t in table.get("tags", ()))
        cats.append(Category(name, table.get("doc", ""), prompts, tags))
    if not cats:
        raise ValueError(f"{path}: no [categories.<name>] tables")
    return tuple(cats)
