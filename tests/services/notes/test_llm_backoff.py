"""A session whose note generation failed transiently (the SDK's retries spent) backs off: its
background pre-warm does not call the LLM again until the back-off has passed, so a dead LLM
is not hammered once per event or sweep."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest

from services.notes import generation, prewarm
from services.notes.context import NotesContext, context_for
from services.notes.vocabulary import NOTE_KINDS
from shared import runtime
from shared.config import Settings
from shared.llm import LLMUnavailable
from tests.support.stub_anthropic import StubAnthropic
from tests.support.workers import add_fact, create_session


@pytest.fixture
def stub() -> Iterator[StubAnthropic]:
    with StubAnthropic() as server:
        yield server


@pytest.fixture
def ctx(migrated: Settings, stub: StubAnthropic) -> Iterator[NotesContext]:
    settings = replace(
        migrated,
        ANTHROPIC_API_KEY="test-key",
        ANTHROPIC_BASE_URL=stub.url,
        LLM_MAX_RETRIES=1,
        NOTES_PREWARM=True,
        NOTES_PREWARM_QUIET_S=0.0,
    )
    runtime.configure(settings)
    context = context_for(settings)
    yield context
    context.generator.llm.close()
    runtime.configure(migrated)


def test_a_transient_failure_backs_the_sessions_prewarm_off(
    ctx: NotesContext, stub: StubAnthropic, make_user: Any
) -> None:
    user = make_user("engineer")
    sid = create_session(user.account_id, problem="Teams status stuck on away")
    version = add_fact(sid, user.account_id, "Confirmed: presence service unreachable")
    stub.fail_next(status=529, times=2, retry_after=0.01)

    with pytest.raises(LLMUnavailable) as failed:
        generation.obtain_note(ctx, NOTE_KINDS[0], sid)
    assert failed.value.retryable and stub.call_count == 2  # one call + the SDK's retry
    assert generation.backing_off(ctx, str(sid))
    ttl = ctx.redis.ttl(generation.backoff_key(ctx, str(sid)))
    assert 0 < ttl <= generation.LLM_BACKOFF_BASE_S

    ctx.cache.note_event(str(sid), version, 0.0)
    assert prewarm.prewarm(ctx, sid, version) == ("backoff", None)
    assert stub.call_count == 2  # the pre-warm made no call

    # A second failure doubles the wait; once it has passed, pre-warm generates again.
    stub.fail_next(status=529, times=2, retry_after=0.01)
    with pytest.raises(LLMUnavailable):
        generation.obtain_note(ctx, NOTE_KINDS[0], sid)
    assert ctx.redis.ttl(generation.backoff_key(ctx, str(sid))) > generation.LLM_BACKOFF_BASE_S
    ctx.redis.delete(generation.backoff_key(ctx, str(sid)))  # the back-off has run out
    outcome, _ = prewarm.prewarm(ctx, sid, version)
    assert outcome == "generated"
    assert stub.refusals == []
