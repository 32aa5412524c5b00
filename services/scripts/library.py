"""The built-in script library: read from its data files and loaded into the database.

The library lives under ``services/scripts/library/``: ``categories.yaml`` lists the categories,
and each category's folder holds one ``<slug>.ps1`` (the template body, verbatim) and one
``<slug>.yaml`` (its metadata and parameters) per template. Loading writes every template
through :mod:`services.scripts.templates`, the module every other template write uses, so the
same validation applies to shipped content as to a user's template.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import select
from sqlalchemy.orm import Session

from services.scripts import templates
from shared.models import ScriptCategory

LIBRARY_DIR = Path(__file__).resolve().parent / "library"

_CATEGORY_FIELDS = ("slug", "name", "description", "icon", "sort_order")
_REQUIRED_META = ("name", "description", "use_case", "tags", "complexity", "estimated_runtime")
_OPTIONAL_META = {
    "requires_elevation": False,
    "requires_modules": [],
    "parameters": [],
    "default_values": {},
    "validation_rules": {},
    # Error-severity static-check findings the library accepts: [{rule, reason}].
    "acknowledged_findings": [],
    "secret_delivery": None,
}


class LibraryFileError(ValueError):
    """A library data file is missing, malformed or names something that does not exist."""


@dataclass(frozen=True)
class Library:
    categories: list[dict[str, Any]]
    templates: list[dict[str, Any]]


# libyaml's safe loader where PyYAML was built with it (the wheels are): the same documents,
# read several times faster than by the pure-Python one.
_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _read_yaml(path: Path) -> Any:
    try:
        return yaml.load(path.read_text(encoding="utf-8"), Loader=_SAFE_LOADER)
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise LibraryFileError(f"{path.name}: {exc}") from exc


def _read_categories(root: Path) -> list[dict[str, Any]]:
    raw = _read_yaml(root / "categories.yaml")
    if not isinstance(raw, list):
        raise LibraryFileError("categories.yaml: must be a list of categories")
    categories = []
    for index, entry in enumerate(raw):
        if not isinstance(entry, dict) or set(entry) != set(_CATEGORY_FIELDS):
            raise LibraryFileError(
                f"categories.yaml[{index}]: needs exactly the fields {', '.join(_CATEGORY_FIELDS)}"
            )
        categories.append({field: entry[field] for field in _CATEGORY_FIELDS})
    return categories


def _read_template(category_slug: str, meta_path: Path) -> dict[str, Any]:
    where = f"{category_slug}/{meta_path.name}"
    meta = _read_yaml(meta_path)
    if not isinstance(meta, dict):
        raise LibraryFileError(f"{where}: must be a mapping")
    unknown = sorted(set(meta) - set(_REQUIRED_META) - set(_OPTIONAL_META))
    if unknown:
        raise LibraryFileError(f"{where}: unknown fields {', '.join(unknown)}")
    missing = [field for field in _REQUIRED_META if field not in meta]
    if missing:
        raise LibraryFileError(f"{where}: missing fields {', '.join(missing)}")
    body_path = meta_path.with_suffix(".ps1")
    try:
        # newline="" keeps the body byte for byte, CRLF included.
        with body_path.open(encoding="utf-8", newline="") as handle:
            body = handle.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise LibraryFileError(f"{where}: no readable {body_path.name} beside it ({exc})") from exc
    spec: dict[str, Any] = {
        "category_slug": category_slug,
        "slug": meta_path.stem,
        "script_body": body,
    }
    for field in _REQUIRED_META:
        spec[field] = meta[field]
    for field, default in _OPTIONAL_META.items():
        value = meta.get(field, default)
        spec[field] = list(value) if isinstance(value, list) else value
    spec["parameters_schema"] = {"parameters": spec.pop("parameters")}
    return spec


def read_library(root: Path = LIBRARY_DIR) -> Library:
    """Every category and template of the library folder, checked for shape (the template
    engine checks bodies and parameters when they are written)."""
    categories = _read_categories(root)
    slugs = {category["slug"] for category in categories}
    folders = {path.name for path in root.iterdir() if path.is_dir()}
    strays = sorted(folders - slugs)
    if strays:
        raise LibraryFileError(f"folders with no category in categories.yaml: {', '.join(strays)}")
    found: list[dict[str, Any]] = []
    for category in categories:
        folder = root / category["slug"]
        if not folder.is_dir():
            continue
        bodies = {path.stem for path in folder.glob("*.ps1")}
        metas = sorted(folder.glob("*.yaml"))
        orphans = sorted(bodies - {path.stem for path in metas})
        if orphans:
            raise LibraryFileError(
                f"{category['slug']}: scripts without metadata: {', '.join(orphans)}"
            )
        found.extend(_read_template(category["slug"], path) for path in metas)
    seen: set[str] = set()
    for spec in found:
        if spec["slug"] in seen:
            raise LibraryFileError(f"template slug '{spec['slug']}' is used twice")
        seen.add(spec["slug"])
    return Library(categories=categories, templates=found)


def load_builtin_library(session: Session, root: Path = LIBRARY_DIR) -> dict[str, Any]:
    """Insert or update every built-in category and template. Running it twice changes nothing
    the second time; a changed body or parameter schema becomes a new template version."""
    library = read_library(root)
    counts = {"categories_created": 0, "templates_created": 0, "templates_updated": 0}

    category_ids: dict[str, uuid.UUID] = {}
    for spec in library.categories:
        category = session.scalars(
            select(ScriptCategory).where(ScriptCategory.slug == spec["slug"])
        ).one_or_none()
        if category is None:
            category = ScriptCategory(slug=spec["slug"], is_active=True)
            session.add(category)
            counts["categories_created"] += 1
        for field in _CATEGORY_FIELDS[1:]:
            setattr(category, field, spec[field])
        session.flush()
        category_ids[spec["slug"]] = category.id

    for spec in library.templates:
        outcome = templates.save_builtin_template(
            session, spec, category_id=category_ids[spec["category_slug"]]
        )
        if outcome != "unchanged":
            counts[f"templates_{outcome}"] += 1
    session.flush()
    counts["categories"] = len(library.categories)
    counts["templates"] = len(library.templates)
    return counts
