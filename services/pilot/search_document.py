"""The stored search document of a resolved session, which similar-session search ranks.

Written when a session is resolved (in the Resolve transaction, after its last fact): the
title, problem and the facts that describe the problem (a resolution says how it ended, not
what it was), lower-cased and bounded; and the title and problem alone, whose trigrams are
compared. PostgreSQL generates the tsvector from the document (``ai_sessions.search_vector``,
GIN-indexed; the statement has a trigram GIN index). A resolved session is read-only, so the
document stays true until the session is reopened, and the next Resolve writes it again.
No Flask.
"""

from __future__ import annotations

import uuid

from sqlalchemy import bindparam, text
from sqlalchemy.orm import Session

__all__ = ["MAX_TEXT_CHARS", "PROBLEM_KINDS", "store_search_document"]

MAX_TEXT_CHARS = 8000
# The kinds that describe the problem.
PROBLEM_KINDS = ("symptom", "observation", "confirmed", "ruled_out", "environment", "root_cause")

_STORE_SQL = text(
    """
    UPDATE pilot.ai_sessions s SET
        search_statement = left(lower(concat_ws(' ', s.title, s.problem)), :max_chars),
        search_document = left(lower(concat_ws(' ', s.title, s.problem, (
            SELECT string_agg(f.text, ' ' ORDER BY f.created_at, f.id)
            FROM pilot.session_facts f
            WHERE f.session_id = s.id AND f.account_id = s.account_id AND f.kind IN :kinds
        ))), :max_chars)
    WHERE s.id IN :session_ids AND s.account_id = :account_id
    """
).bindparams(bindparam("kinds", expanding=True), bindparam("session_ids", expanding=True))


def store_search_document(
    session: Session, session_id: uuid.UUID | list[uuid.UUID], account_id: uuid.UUID
) -> None:
    """Write the search document of the session (or sessions) of the account from its current
    title, problem and facts (the caller has flushed them), in the caller's transaction."""
    ids = session_id if isinstance(session_id, list) else [session_id]
    if not ids:
        return
    session.execute(
        _STORE_SQL,
        {
            "session_ids": ids,
            "account_id": account_id,
            "kinds": list(PROBLEM_KINDS),
            "max_chars": MAX_TEXT_CHARS,
        },
    )
