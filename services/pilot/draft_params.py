"""With an API key, the LLM proposes a draft template's parameters; the proposal is checked
literal by literal before anything of it is used.

The LLM sees the fix (title, summary, the session's problem), its script with every secret
withheld, and the list of the script's literals as the syntax tree finds them
(:func:`shared.powershell_lift_plan.literal_sites`), the deterministic lifter's choices
marked. It answers with structured output (:data:`ANSWER_SCHEMA`): for each literal to lift
a key, a label, a type and a help text, and the lifter's choices it would leave as written.
The prompt is data (``draft_params_prompt.txt``, versioned on its first line).

:func:`choose_parameters` then keeps only what it can prove:

* the literal is one of the script's literals on the tree, copied exactly, and holds no
  secret;
* the key is an identifier the engine takes (not its reserved ``rfp_`` prefix), unique;
* the type is one of :data:`PROPOSABLE_TYPES`, and the literal's value is valid for it (an
  integer literal only as ``integer``); the label is one short line.

Anything else is rejected (and named in the answer) and that literal falls back to the
deterministic lift. The template is built from the chosen sites on the tree, so the body is
the script byte for byte outside the placeholders, and it is checked to render back to the
script before it is used; otherwise the deterministic lift is used whole. No Flask.
"""

from __future__ import annotations

import ipaddress
import json
import re
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from sqlalchemy import select

from services.pilot.prompts import load_prompt
from shared.db import db
from shared.events import write_transaction
from shared.llm import GENERATOR_ANTHROPIC, GENERATOR_OFFLINE, LLMClient, LLMUnavailable
from shared.models import AISession
from shared.models.ai_session import SuggestedFix
from shared.permissions import can_create_content
from shared.powershell_lift_plan import (
    LiteralSite,
    deterministic_sites,
    lift_sites,
    literal_sites,
    script_with_secrets_withheld,
)
from shared.powershell_literals import (
    LiftedParameter,
    LiftedScript,
    lift_literals,
    normalised_tree,
)
from shared.principal import Principal
from shared.usage import record_call
from shared.vocabulary import REDACTION_MARKER

__all__ = [
    "ANSWER_SCHEMA",
    "GENERATOR_FALLBACK",
    "PROMPT_VERSION",
    "PROPOSABLE_TYPES",
    "ChosenParameters",
    "Proposal",
    "build_messages",
    "choose_parameters",
    "propose_for_fix",
]

PROMPT_FILE_NAME = "draft_params_prompt.txt"
USAGE_PURPOSE = "template_draft"
MAX_TOKENS = 2000
MAX_PROPOSALS = 40
MAX_LITERALS_SHOWN = 80
MAX_SCRIPT_CHARS = 12000
MAX_LABEL = 80
MAX_HELP = 400
#: The LLM answered but it could not be used (the call failed, or not the schema's shape).
GENERATOR_FALLBACK = "offline-fallback"

#: The types the LLM may give a parameter: those whose value this service can check against
#: the literal it replaces (each is one of the scripts engine's parameter types; a test keeps
#: them so).
PROPOSABLE_TYPES = ("string", "hostname", "ip", "email", "upn", "path", "integer")

_KEY_RE = re.compile(r"[a-z][a-z0-9_]{0,39}")
_RESERVED_PREFIX = "rfp_"
_HOST_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOSTNAME_RE = re.compile(rf"(?=.{{1,253}}\Z){_HOST_LABEL}(?:\.{_HOST_LABEL})*\.?")
_EMAIL_RE = re.compile(
    rf"[A-Za-z0-9!#$%&'*+/=?^_`{{|}}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{{|}}~-]+)*"
    rf"@{_HOST_LABEL}(?:\.{_HOST_LABEL})+"
)
_PATH_RE = re.compile(r"(?:[A-Za-z]:[\\/]|\\\\[^\\/\s]+[\\/])[^\r\n\"*?<>|]*")

PROMPT_VERSION, SYSTEM_PROMPT = load_prompt(Path(__file__).with_name(PROMPT_FILE_NAME))

ANSWER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["parameters", "keep_as_written"],
    "properties": {
        "parameters": {
            "type": "array",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["literal", "key", "label", "type", "help"],
                "properties": {
                    "literal": {"type": "string"},
                    "key": {"type": "string"},
                    "label": {"type": "string"},
                    "type": {"type": "string", "enum": list(PROPOSABLE_TYPES)},
                    "help": {"type": "string"},
                },
            },
        },
        "keep_as_written": {"type": "array", "items": {"type": "string"}},
    },
}


@dataclass(frozen=True)
class Proposal:
    """What the LLM answered (``answer`` None: nothing usable) and which generator that is."""

    generator: str
    answer: dict[str, Any] | None = None
    model: str | None = None
    error: str | None = None


@dataclass(frozen=True)
class ChosenParameters:
    lifted: LiftedScript
    generator: str
    #: Per parameter key: "llm" (the LLM's name, label and type) or "lifter".
    sources: dict[str, str] = field(default_factory=dict)
    #: Each rejected proposal: the literal (or "(answer)") and why.
    rejected: list[dict[str, str]] = field(default_factory=list)


# ── The request ────────────────────────────────────────────────────────────


def _literal_list(script: str, sites: list[LiteralSite]) -> list[dict[str, Any]]:
    lifted = lift_literals(script)
    chosen = deterministic_sites(script, lifted, sites) or {}
    listed: dict[str, dict[str, Any]] = {}
    for site in sites:
        if site.sensitive:
            continue
        value = str(site.value)
        entry = listed.setdefault(value, {"value": value, "bound_to": site.bound_to})
        parameter = chosen.get(site.start)
        if parameter is not None and "suggested" not in entry:
            entry["suggested"] = {"key": parameter.key, "type": parameter.type}
        if len(listed) >= MAX_LITERALS_SHOWN:
            break
    return list(listed.values())


def build_messages(
    script: str, *, title: str, summary: str | None, problem: str | None
) -> list[dict[str, Any]]:
    """The user message: the fix, its script with secrets withheld, and its literals."""
    sites = literal_sites(script)
    shown = script_with_secrets_withheld(script, sites, REDACTION_MARKER)[:MAX_SCRIPT_CHARS]
    fix = {"title": title, "summary": summary or "", "problem": problem or ""}
    literals = json.dumps(_literal_list(script, sites), indent=1, ensure_ascii=False)
    user = (
        "Propose the parameters of a template made from this fix.\n\n"
        f"<fix>\n{json.dumps(fix, ensure_ascii=False)}\n</fix>\n\n"
        f"<script>\n{shown}\n</script>\n\n"
        f"<literals>\n{literals}\n</literals>\n\n"
        "Types offered: " + ", ".join(PROPOSABLE_TYPES) + ".\n"
        "Answer with the JSON object only."
    )
    return [{"role": "user", "content": user}]


def propose_for_fix(
    llm: LLMClient, principal: Principal, session_id: uuid.UUID, fix_id: uuid.UUID
) -> Proposal:
    """Ask the LLM about the fix's script (outside any transaction; the call is recorded in
    the usage ledger). Offline, or for a fix that is not the caller's undecided active fix
    with a script in an active session, nothing is asked: the decision itself says why."""
    if not llm.online or not can_create_content(principal):
        return Proposal(GENERATOR_OFFLINE)
    account_id = principal.account_id
    with db.session() as session:
        row = session.execute(
            select(SuggestedFix.title, SuggestedFix.summary, SuggestedFix.script, AISession.problem)
            .join(AISession, AISession.id == SuggestedFix.session_id)
            .where(
                SuggestedFix.id == fix_id,
                SuggestedFix.session_id == session_id,
                SuggestedFix.account_id == account_id,
                SuggestedFix.superseded_at.is_(None),
                SuggestedFix.decision.is_(None),
                AISession.status == "active",
            )
        ).one_or_none()
    if row is None or not (row.script or "").strip():
        return Proposal(GENERATOR_OFFLINE)
    messages = build_messages(row.script, title=row.title, summary=row.summary, problem=row.problem)
    try:
        result = llm.complete_json(
            system=SYSTEM_PROMPT,
            messages=messages,
            max_tokens=MAX_TOKENS,
            schema=ANSWER_SCHEMA,
            offline=lambda: json.dumps({"parameters": [], "keep_as_written": []}),
        )
    except LLMUnavailable as exc:
        return Proposal(GENERATOR_FALLBACK, error=exc.reason)
    with write_transaction() as session:
        record_call(
            session, result, account_id=account_id, ai_session_id=session_id, purpose=USAGE_PURPOSE
        )
    if result.generator != GENERATOR_ANTHROPIC:  # pragma: no cover - online answers online
        return Proposal(GENERATOR_OFFLINE)
    try:
        answer = json.loads(result.text)
    except ValueError:
        return Proposal(GENERATOR_FALLBACK, model=result.model, error="not JSON")
    if not isinstance(answer, dict) or not isinstance(answer.get("parameters"), list):
        return Proposal(GENERATOR_FALLBACK, model=result.model, error="not the schema's shape")
    return Proposal(GENERATOR_ANTHROPIC, answer=answer, model=result.model)


# ── Checking the answer ────────────────────────────────────────────────────


def _value_fits(value: str | int, ptype: str) -> bool:
    if isinstance(value, int):
        return ptype == "integer"
    if ptype == "integer" or not value.isprintable() or len(value) > 260:
        return False
    if ptype == "string":
        return True
    if ptype == "hostname":
        return value.isascii() and _HOSTNAME_RE.fullmatch(value) is not None
    if ptype in ("email", "upn"):
        return value.isascii() and len(value) <= 254 and _EMAIL_RE.fullmatch(value) is not None
    if ptype == "ip":
        try:
            address = ipaddress.ip_address(value)
        except ValueError:
            return False
        return not (isinstance(address, ipaddress.IPv6Address) and address.scope_id)
    if ptype == "path":
        return _PATH_RE.fullmatch(value) is not None
    return False


def _line(value: Any, limit: int) -> str | None:
    if not isinstance(value, str):
        return None
    text = " ".join(value.split())
    if not text or len(text) > limit or not text.isprintable():
        return None
    return text


def _check_one(
    item: Any, sites: list[LiteralSite], accepted: dict[str, LiftedParameter], keys: set[str]
) -> tuple[LiftedParameter | None, str]:
    """The parameter an item proposes, or None and why not."""
    if not isinstance(item, dict):
        return None, "not an object"
    literal = item.get("literal")
    if not isinstance(literal, str) or not literal:
        return None, "no literal"
    matching = [site for site in sites if str(site.value) == literal]
    if not matching:
        return None, "not a literal of the script"
    if any(site.sensitive for site in matching):
        return None, "the literal holds a secret"
    if literal in accepted:
        return None, "the literal was proposed twice"
    key = item.get("key")
    if not isinstance(key, str) or not _KEY_RE.fullmatch(key) or key.startswith(_RESERVED_PREFIX):
        return None, "the key is not a valid parameter name"
    if key in keys:
        return None, "the key is used twice"
    ptype = item.get("type")
    if not isinstance(ptype, str) or ptype not in PROPOSABLE_TYPES:
        return None, "unknown type"
    value = matching[0].value
    if not _value_fits(value, ptype):
        return None, f"the literal is not a valid {ptype}"
    label = _line(item.get("label"), MAX_LABEL)
    if label is None:
        return None, "the label is not one short line"
    help_text = _line(item.get("help"), MAX_HELP) or f"The value the fix used was {literal}."
    return (
        LiftedParameter(
            key=key, label=label, type=ptype, default=value, help=help_text, kind="proposed"
        ),
        "",
    )


def _renders_back(script: str, lifted: LiftedScript) -> bool:
    """Rendering the body with the defaults gives the script's syntax tree: every placeholder
    is used, and written back as its default (a quoted literal) the values are the script's."""
    text = lifted.body
    for parameter in lifted.parameters:
        placeholder = f"{{{{{parameter.key}}}}}"
        if placeholder not in text:
            return False
        default = parameter.default
        literal = (
            str(default)
            if isinstance(default, int)
            else "'{}'".format(str(default).replace("'", "''"))
        )
        text = text.replace(placeholder, literal)
    return normalised_tree(text) == normalised_tree(script)


def choose_parameters(script: str, proposal: Proposal | None) -> ChosenParameters:
    """The draft's body and parameters: the LLM's checked proposal where it holds, the
    deterministic lift for every other literal."""
    lifted = lift_literals(script)
    generator = proposal.generator if proposal is not None else GENERATOR_OFFLINE
    if proposal is None or proposal.answer is None:
        return ChosenParameters(lifted, generator, {p.key: "lifter" for p in lifted.parameters})
    sites = literal_sites(script)
    deterministic = deterministic_sites(script, lifted, sites)
    if deterministic is None:
        return ChosenParameters(
            lifted,
            GENERATOR_FALLBACK,
            {p.key: "lifter" for p in lifted.parameters},
            [{"literal": "(answer)", "reason": "the script could not be re-lifted"}],
        )
    answer = proposal.answer
    accepted: dict[str, LiftedParameter] = {}
    keys: set[str] = set()
    rejected: list[dict[str, str]] = []
    for item in list(answer.get("parameters") or [])[:MAX_PROPOSALS]:
        parameter, why = _check_one(item, sites, accepted, keys)
        if parameter is None:
            literal = item.get("literal") if isinstance(item, dict) else None
            rejected.append({"literal": str(literal)[:200], "reason": why})
            continue
        accepted[str(parameter.default)] = parameter
        keys.add(parameter.key)
    lifted_values = {str(site.value) for site in sites if site.start in deterministic}
    keep = {
        value
        for value in answer.get("keep_as_written") or []
        if isinstance(value, str) and value in lifted_values and value not in accepted
    }
    renamed: dict[str, LiftedParameter] = {}
    chosen: dict[int, LiftedParameter] = {}
    for site in sites:
        value = str(site.value)
        if value in accepted:
            chosen[site.start] = accepted[value]
            continue
        parameter = deterministic.get(site.start)
        if parameter is None or value in keep:
            continue
        if parameter.key not in renamed:
            key, n = parameter.key, 2
            while key in keys:
                key, n = f"{parameter.key}_{n}", n + 1
            keys.add(key)
            renamed[parameter.key] = replace(parameter, key=key)
        chosen[site.start] = renamed[parameter.key]
    result = lift_sites(script, chosen, sites)
    if not _renders_back(script, result):
        return ChosenParameters(
            lifted,
            GENERATOR_FALLBACK,
            {p.key: "lifter" for p in lifted.parameters},
            [*rejected, {"literal": "(answer)", "reason": "the template did not render back"}],
        )
    sources = {p.key: "llm" if p.kind == "proposed" else "lifter" for p in result.parameters}
    return ChosenParameters(result, GENERATOR_ANTHROPIC, sources, rejected)
