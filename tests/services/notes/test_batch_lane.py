"""The batch lane end to end in one process: a backfill queued through the CLI, submitted to the
stub's Message Batches endpoints, polled, collected into the note cache and the ledger at the
batch price; an unusable answer is recorded as errored and cached nowhere."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import replace
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select

from services.notes import batch
from services.notes.context import NotesContext, context_for
from services.notes.vocabulary import NOTE_KINDS
from shared import runtime
from shared.config import Settings
from shared.db import db
from shared.models import LLMBatchItem, LLMUsageRecord
from shared.usage import usage_cost
from tests.support.stub_anthropic import StubAnthropic
from tests.support.workers import add_fact, create_session, resolve_session

KIND = NOTE_KINDS[0]


@pytest.fixture
def stub() -> Iterator[StubAnthropic]:
    with StubAnthropic() as server:
        yield server


@pytest.fixture
def ctx(migrated: Settings, stub: StubAnthropic) -> Iterator[NotesContext]:
    settings = replace(
        migrated, ANTHROPIC_API_KEY="test-key", ANTHROPIC_BASE_URL=stub.url, LLM_MAX_RETRIES=0
    )
    runtime.configure(settings)
    context = context_for(settings)
    yield context
    context.generator.llm.close()
    runtime.configure(migrated)


def _resolved_session(account_id: uuid.UUID, text: str) -> uuid.UUID:
    sid = create_session(account_id, problem=f"Backfill {text}")
    add_fact(sid, account_id, f"Confirmed: {text}", "confirmed")
    resolve_session(sid, account_id)
    return sid


def test_backfill_goes_through_message_batches_into_the_cache_and_the_ledger(
    ctx: NotesContext, stub: StubAnthropic, make_user: Any
) -> None:
    from app.cli import backfill_notes

    user = make_user("owner")
    good = _resolved_session(user.account_id, "the DHCP scope was exhausted")
    bad = _resolved_session(user.account_id, "the certificate had expired")
    stub.batch_polls_before_end = 1
    # Answers are handed out in submission order: the first session's note is valid (the
    # default responder), the second one gets an unusable answer.
    queued = backfill_notes(ctx.settings, account=str(user.account_id), session=None)
    assert queued == {"queued": 2}
    # Queuing twice queues nothing more while the first ones are pending.
    assert backfill_notes(ctx.settings, account=str(user.account_id), session=None) == {"queued": 0}
    stub.queue_responses(stub.responder(_params_for(good)), "no sections at all")

    first = batch.run_lane(ctx)
    assert first == {"submitted": 2, "collected": 0, "errored": 0}  # still in progress
    assert stub.call_count == 0  # nothing went through /v1/messages
    [submission] = stub.batch_submissions
    assert {r["custom_id"] for r in submission["requests"]} == {
        str(i.id) for i in _items(user.account_id)
    }
    for entry in submission["requests"]:
        assert entry["params"]["model"] == ctx.settings.ANTHROPIC_MODEL
    assert stub.refusals == []

    second = batch.run_lane(ctx)
    assert second == {"submitted": 0, "collected": 1, "errored": 1}
    assert batch.run_lane(ctx) == {"submitted": 0, "collected": 0, "errored": 0}

    items = {i.ai_session_id: i for i in _items(user.account_id)}
    assert items[good].status == "succeeded" and items[bad].status == "errored"
    assert items[bad].error is not None and items[bad].error.startswith("invalid note")

    cached = ctx.cache.get(KIND, str(good), items[good].state_version)
    assert cached is not None and cached["batch"] is True
    assert "DHCP scope" in cached["markdown"]
    assert ctx.cache.get(KIND, str(bad), items[bad].state_version) is None

    with db.session() as session:
        rows = {
            r.ai_session_id: r
            for r in session.scalars(
                select(LLMUsageRecord).where(LLMUsageRecord.account_id == user.account_id)
            )
        }
    assert rows[good].batch is True and rows[good].error is None
    full = usage_cost(rows[good].model, _usage_of(rows[good]))
    assert rows[good].cost_usd == usage_cost(rows[good].model, _usage_of(rows[good]), batch=True)
    assert rows[good].cost_usd * 2 == full  # no cache figures here: exactly half
    assert rows[bad].error is not None and rows[bad].error.startswith("invalid note")


def _params_for(sid: uuid.UUID) -> dict[str, Any]:
    with db.session() as session:
        item = session.scalars(select(LLMBatchItem).where(LLMBatchItem.ai_session_id == sid)).one()
        return dict(item.params)


def _items(account_id: uuid.UUID) -> list[LLMBatchItem]:
    with db.session() as session:
        return list(
            session.scalars(
                select(LLMBatchItem)
                .where(LLMBatchItem.account_id == account_id)
                .order_by(LLMBatchItem.created_at)
            )
        )


def _usage_of(row: LLMUsageRecord) -> Any:
    from shared.llm import LLMUsage

    assert row.cache_creation_input_tokens == row.cache_read_input_tokens == 0
    assert row.cost_usd > Decimal(0)
    return LLMUsage(input_tokens=row.input_tokens, output_tokens=row.output_tokens)
