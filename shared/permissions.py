"""Who may see and change what. One visibility rule per object type, used by every path
(read, update, delete, share, generate) so that an invisible object is a 404 everywhere."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, and_, false, or_, true

from shared.models import ScriptTemplate
from shared.principal import Principal


def can_create_content(principal: Principal) -> bool:
    return principal.is_super_admin or principal.role in ("owner", "engineer")


def can_administer_account(principal: Principal) -> bool:
    return principal.is_super_admin or principal.role == "owner"


def template_visibility(
    principal: Principal, templates: Any = ScriptTemplate
) -> ColumnElement[bool]:
    """SQL condition: the templates this principal may see (in `templates`: the table, or a
    view with its scope columns such as exposed.scripts_templates).

    builtin: everyone. team: members of that team in that account, and the account's owners.
    personal: the creator, and the account's owners. Super admins operate the platform and see
    every template.
    """
    if principal.is_super_admin:
        return true()
    own_account = templates.account_id == principal.account_id
    clauses = [
        templates.scope == "builtin",
        and_(
            own_account,
            templates.scope == "personal",
            templates.created_by == principal.id,
        ),
    ]
    if principal.team_id is not None:
        clauses.append(
            and_(
                own_account,
                templates.scope == "team",
                templates.team_id == principal.team_id,
            )
        )
    if principal.is_owner:
        clauses.append(own_account)
    return or_(*clauses)


def can_see_template(principal: Principal, template: ScriptTemplate) -> bool:
    if principal.is_super_admin or template.scope == "builtin":
        return True
    if template.account_id != principal.account_id:
        return False
    if principal.is_owner:
        return True
    if template.scope == "personal":
        return template.created_by == principal.id
    return template.team_id is not None and template.team_id == principal.team_id


def template_manageable(principal: Principal) -> ColumnElement[bool]:
    """SQL condition: the visible templates this principal may edit (the `managed` filter)."""
    if principal.is_super_admin:
        return true()
    if principal.role == "viewer":
        return false()
    if principal.is_owner:
        return ScriptTemplate.account_id == principal.account_id
    return and_(
        ScriptTemplate.account_id == principal.account_id,
        ScriptTemplate.created_by == principal.id,
    )


def can_manage_template(principal: Principal, template: ScriptTemplate) -> bool:
    """Edit and delete: builtins by super admins only; an account's templates by their creator
    (unless a viewer) and by the account's owners."""
    if principal.is_super_admin:
        return True
    if template.scope == "builtin" or template.account_id != principal.account_id:
        return False
    if principal.is_owner:
        return True
    return principal.role == "engineer" and template.created_by == principal.id
