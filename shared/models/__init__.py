"""Every table of the product, one module per aggregate."""

from shared.models.account import ACCOUNT_ROLES, Account, Team, User
from shared.models.ai_session import (
    FIX_DECISIONS,
    SESSION_STATUSES,
    AISession,
    ChatMessage,
    SessionFact,
    SuggestedFix,
)
from shared.models.base import Base, utcnow
from shared.models.events import OutboxEvent
from shared.models.kb_articles import KbArticle
from shared.models.notes import (
    DELIVERY_STATUSES,
    ResolutionNote,
    TicketingIntegration,
    WebhookAttempt,
    WorkerProcess,
)
from shared.models.scripts import (
    TEMPLATE_SCOPES,
    TEMPLATE_STATUSES,
    ScriptCategory,
    ScriptGeneration,
    ScriptTemplate,
    ScriptTemplateVersion,
)
from shared.models.usage import BATCH_ITEM_STATUSES, LLMBatchItem, LLMUsageRecord, NoteReuse
from shared.vocabulary import FACT_KINDS

__all__ = [
    "ACCOUNT_ROLES",
    "BATCH_ITEM_STATUSES",
    "DELIVERY_STATUSES",
    "FACT_KINDS",
    "FIX_DECISIONS",
    "SESSION_STATUSES",
    "TEMPLATE_SCOPES",
    "TEMPLATE_STATUSES",
    "AISession",
    "Account",
    "Base",
    "ChatMessage",
    "KbArticle",
    "LLMBatchItem",
    "LLMUsageRecord",
    "NoteReuse",
    "OutboxEvent",
    "ResolutionNote",
    "ScriptCategory",
    "ScriptGeneration",
    "ScriptTemplate",
    "ScriptTemplateVersion",
    "SessionFact",
    "SuggestedFix",
    "Team",
    "TicketingIntegration",
    "User",
    "WebhookAttempt",
    "WorkerProcess",
    "utcnow",
]
