"""Loading the built-in script library into the database, idempotently."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from services.scripts.builtin_library import CATEGORIES, TEMPLATES
from services.scripts.engine import ScriptTemplateEngine
from services.scripts.templates import EDITABLE_FIELDS, normalise_tags
from shared.models import ScriptCategory, ScriptTemplate, ScriptTemplateVersion

_CATEGORY_FIELDS = ("name", "description", "icon", "sort_order")
_TEMPLATE_FIELDS = tuple(field for field in EDITABLE_FIELDS if field != "category_id")


def load_builtin_library(session: Session) -> dict[str, Any]:
    """Insert or update every built-in category and template. Running it twice changes nothing
    the second time; a changed body or parameter schema becomes a new template version."""
    engine = ScriptTemplateEngine()
    counts = {"categories_created": 0, "templates_created": 0, "templates_updated": 0}

    categories: dict[str, uuid.UUID] = {}
    for spec in CATEGORIES:
        category = session.scalars(
            select(ScriptCategory).where(ScriptCategory.slug == spec["slug"])
        ).one_or_none()
        if category is None:
            category = ScriptCategory(slug=spec["slug"], is_active=True)
            session.add(category)
            counts["categories_created"] += 1
        for field in _CATEGORY_FIELDS:
            setattr(category, field, spec.get(field))
        session.flush()
        categories[spec["slug"]] = category.id

    for spec in TEMPLATES:
        engine.validate_template(
            spec["script_body"],
            spec.get("parameters_schema"),
            spec.get("default_values"),
            spec.get("validation_rules"),
        )
        values = {field: spec.get(field) for field in _TEMPLATE_FIELDS}
        values["tags"] = normalise_tags(values["tags"])
        values["default_values"] = values["default_values"] or {}
        values["validation_rules"] = values["validation_rules"] or {}
        values["requires_modules"] = list(values["requires_modules"] or [])
        values["requires_elevation"] = bool(values["requires_elevation"])
        template = session.scalars(
            select(ScriptTemplate)
            .where(
                ScriptTemplate.account_id.is_(None),
                ScriptTemplate.slug == spec["slug"],
                ScriptTemplate.is_active.is_(True),
            )
            # Two loaders at once must not both bump a changed template's version.
            .with_for_update()
        ).one_or_none()
        category_id = categories[spec["category_slug"]]
        if template is None:
            template = ScriptTemplate(
                id=uuid.uuid4(),
                scope="builtin",
                slug=spec["slug"],
                category_id=category_id,
                version=1,
                usage_count=0,
                is_active=True,
                **values,
            )
            session.add(template)
            session.flush()
            _snapshot(session, template)
            counts["templates_created"] += 1
            continue
        changed = template.category_id != category_id or any(
            getattr(template, f) != v for f, v in values.items()
        )
        if not changed:
            continue
        new_version = any(
            getattr(template, f) != values[f] for f in ("script_body", "parameters_schema")
        )
        template.category_id = category_id
        for field, value in values.items():
            setattr(template, field, value)
        if new_version:
            template.version += 1
            session.flush()
            _snapshot(session, template)
        counts["templates_updated"] += 1
    session.flush()
    counts["categories"] = len(CATEGORIES)
    counts["templates"] = len(TEMPLATES)
    return counts


def _snapshot(session: Session, template: ScriptTemplate) -> None:
    session.add(
        ScriptTemplateVersion(
            template_id=template.id,
            version=template.version,
            script_body=template.script_body,
            parameters_schema=template.parameters_schema,
        )
    )
