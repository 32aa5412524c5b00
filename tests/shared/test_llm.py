"""shared.llm against the local Messages API stub: the real anthropic SDK code runs."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from typing import Any

import pytest

from shared.config import Settings
from shared.llm import (
    LLMClient,
    LLMResult,
    LLMUnavailable,
    LLMUsage,
    estimate_tokens,
    fit_history,
)
from tests.support.stub_anthropic import StubAnthropic

MODEL = os.environ.get("ANTHROPIC_MODEL") or "claude-sonnet-5-5"
# Stable and cacheable: about 2,600 tokens, above every supported Sonnet's caching minimum.
SYSTEM = "You are a careful support engineer. " * 300
SECRET_PROMPT = "the-user-wrote-this-and-it-must-not-be-logged"


@pytest.fixture(scope="module")
def stub() -> Iterator[StubAnthropic]:
    with StubAnthropic() as server:
        yield server


@pytest.fixture(autouse=True)
def _fresh_stub(stub: StubAnthropic) -> None:
    stub.reset()


def make_client(
    stub: StubAnthropic, *, timeout_s: float = 5.0, max_retries: int = 1, model: str = MODEL
) -> LLMClient:
    return LLMClient(
        api_key="test-key",
        base_url=stub.url,
        model=model,
        timeout_s=timeout_s,
        max_retries=max_retries,
    )


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


def assistant(text: str) -> dict[str, Any]:
    return {"role": "assistant", "content": text}


def never() -> str:
    raise AssertionError("the offline generator must not run when a key is configured")


def run_stream(client: LLMClient, **kwargs: Any) -> tuple[list[str], LLMResult]:
    deltas: list[str] = []
    results: list[LLMResult] = []
    for item in client.stream(**kwargs):
        if isinstance(item, LLMResult):
            results.append(item)
        else:
            assert not results, "no delta may follow the final result"
            deltas.append(item)
    assert len(results) == 1
    return deltas, results[0]


# -- complete -------------------------------------------------------------------------------


def test_complete_returns_text_usage_and_metadata(stub: StubAnthropic) -> None:
    client = make_client(stub)
    assert client.online
    result = client.complete(
        system=SYSTEM, messages=[user("printer offline")], max_tokens=256, offline=never
    )
    assert result.generator == "anthropic"
    assert "printer offline" in result.text
    assert result.model == MODEL
    assert result.stop_reason == "end_turn"
    assert result.usage.input_tokens > 0 and result.usage.output_tokens > 0
    assert result.latency_ms >= 0
    sent = stub.last_request
    assert sent is not None
    assert sent["model"] == MODEL and sent["max_tokens"] == 256
    assert sent["messages"] == [user("printer offline")]
    assert "temperature" not in sent


def test_system_prompt_block_carries_cache_control(stub: StubAnthropic) -> None:
    client = make_client(stub)
    client.complete(system=SYSTEM, messages=[user("hi")], max_tokens=64, offline=never)
    assert stub.last_request is not None
    assert stub.last_request["system"] == [
        {"type": "text", "text": SYSTEM, "cache_control": {"type": "ephemeral"}}
    ]


def test_list_system_marks_first_block_and_cache_system_false_marks_none(
    stub: StubAnthropic,
) -> None:
    client = make_client(stub)
    blocks = [{"type": "text", "text": SYSTEM}, {"type": "text", "text": "Per-turn context"}]
    client.complete(system=blocks, messages=[user("hi")], max_tokens=64, offline=never)
    assert stub.last_request is not None
    sent = stub.last_request["system"]
    assert sent[0]["cache_control"] == {"type": "ephemeral"}
    assert "cache_control" not in sent[1]
    assert "cache_control" not in blocks[0], "the caller's blocks are not modified"

    client.complete(
        system=SYSTEM, messages=[user("hi")], max_tokens=64, offline=never, cache_system=False
    )
    assert stub.last_request is not None
    assert stub.last_request["system"] == [{"type": "text", "text": SYSTEM}]


def test_cache_figures_are_recorded(stub: StubAnthropic) -> None:
    client = make_client(stub)
    first = client.complete(system=SYSTEM, messages=[user("one")], max_tokens=64, offline=never)
    second = client.complete(system=SYSTEM, messages=[user("two")], max_tokens=64, offline=never)
    assert first.usage.cache_creation_input_tokens > 0
    assert first.usage.cache_read_input_tokens == 0
    assert second.usage.cache_read_input_tokens == first.usage.cache_creation_input_tokens
    assert second.usage.cache_creation_input_tokens == 0


def test_temperature_reaches_only_models_that_take_sampling_params(stub: StubAnthropic) -> None:
    for model, sent in (("claude-sonnet-4-6", True), ("claude-sonnet-5-5", False)):
        client = make_client(stub, model=model)
        result = client.complete(
            system=SYSTEM, messages=[user("hi")], max_tokens=64, offline=never, temperature=0.2
        )
        assert result.generator == "anthropic"
        assert stub.last_request is not None
        assert ("temperature" in stub.last_request) is sent, model
    assert stub.refusals == []


def test_rate_limit_then_success_is_retried_transparently(stub: StubAnthropic) -> None:
    client = make_client(stub, max_retries=2)
    stub.fail_next(status=429, times=1, retry_after=0.01)
    result = client.complete(system=SYSTEM, messages=[user("hi")], max_tokens=64, offline=never)
    assert result.generator == "anthropic"
    assert stub.call_count == 2
    assert [c["headers"].get("x-stainless-retry-count") for c in stub.calls] == ["0", "1"]


def test_persistent_overload_raises_after_all_retries(stub: StubAnthropic) -> None:
    client = make_client(stub, max_retries=2)
    stub.fail_next(status=529, times=10, retry_after=0.01)
    with pytest.raises(LLMUnavailable) as info:
        client.complete(system=SYSTEM, messages=[user("hi")], max_tokens=64, offline=never)
    assert info.value.reason == "overloaded"
    assert info.value.status_code == 529
    assert info.value.retryable
    assert stub.call_count == 3  # max_retries + 1


def test_persistent_server_error_uses_sdk_backoff(stub: StubAnthropic) -> None:
    # No retry-after header: the SDK's own backoff (about 0.4-0.5 s for the first retry).
    client = make_client(stub, max_retries=1)
    stub.fail_next(status=500, times=2)
    with pytest.raises(LLMUnavailable) as info:
        client.complete(system=SYSTEM, messages=[user("hi")], max_tokens=64, offline=never)
    assert (info.value.reason, info.value.status_code) == ("server_error", 500)
    assert stub.call_count == 2


def test_timeout_raises_llm_unavailable(stub: StubAnthropic) -> None:
    client = make_client(stub, timeout_s=0.5, max_retries=1)
    stub.delay_next(3.0, times=2)
    with pytest.raises(LLMUnavailable) as info:
        client.complete(system=SYSTEM, messages=[user("hi")], max_tokens=64, offline=never)
    assert info.value.reason == "timeout"
    assert info.value.status_code is None
    assert info.value.retryable
    assert stub.call_count == 2


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        (401, "auth_error"),
        (403, "auth_error"),
        (400, "invalid_request"),
        (404, "invalid_request"),
        (413, "invalid_request"),
    ],
)
def test_client_errors_are_not_retried(stub: StubAnthropic, status: int, reason: str) -> None:
    client = make_client(stub, max_retries=3)
    stub.fail_next(status=status, times=5)
    with pytest.raises(LLMUnavailable) as info:
        client.complete(system=SYSTEM, messages=[user("hi")], max_tokens=64, offline=never)
    assert (info.value.reason, info.value.status_code) == (reason, status)
    assert not info.value.retryable
    assert stub.call_count == 1
    # The API's own error type travels with the exception, for the ledger.
    assert info.value.error.split(":")[0].endswith("_error") or "request_too_large" in (
        info.value.error
    )


def test_api_refusal_carries_the_api_error_message(stub: StubAnthropic) -> None:
    client = make_client(stub, model="claude-sonnet-4-6", max_retries=3)
    # Above the output limit: the client would cap it itself, so send it around the client.
    request = client.build_request(SYSTEM, [user("hi")], 64)
    request["max_tokens"] = 64_001
    with pytest.raises(Exception) as info:
        client._client.messages.create(**request)  # type: ignore[union-attr]
    assert "64001 > 64000" in str(info.value)
    assert stub.call_count == 1


@pytest.mark.parametrize("model", ["claude-sonnet-5-5", "claude-sonnet-4-6"])
def test_no_request_the_model_refuses_is_sent(stub: StubAnthropic, model: str) -> None:
    client = make_client(stub, model=model)
    client.complete(
        system=SYSTEM,
        messages=[user("a"), assistant("b"), user("c")],
        max_tokens=500_000,  # above every model's output limit: capped
        offline=never,
        temperature=0.0,
    )
    run_stream(client, system=SYSTEM, messages=[user("d")], max_tokens=64, offline=never)
    assert stub.refusals == []
    assert stub.calls[0]["json"]["max_tokens"] == client.spec.max_output_tokens


def test_a_prefill_for_a_model_that_refuses_it_is_refused_locally(stub: StubAnthropic) -> None:
    client = make_client(stub, model="claude-sonnet-5-5", max_retries=3)
    with pytest.raises(LLMUnavailable) as info:
        client.complete(
            system=SYSTEM,
            messages=[user("hi"), assistant("## Problem")],
            max_tokens=64,
            offline=never,
        )
    assert info.value.reason == "unsupported_request" and not info.value.retryable
    assert "prefill" in info.value.error
    assert stub.call_count == 0


def test_unknown_model_warns_and_gets_conservative_rules(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from shared.llm_models import CONSERVATIVE, conform_request, spec_for

    with caplog.at_level(logging.WARNING, logger="shared.llm_models"):
        spec = spec_for("claude-future-9-9")
        spec_for("claude-future-9-9")
    assert spec is CONSERVATIVE
    assert [r.message for r in caplog.records].count("llm.unknown_model") == 1
    out = conform_request(
        {
            "model": "claude-future-9-9",
            "max_tokens": 100_000,
            "temperature": 0.3,
            "thinking": {"type": "enabled", "budget_tokens": 1024},
            "tool_choice": {"type": "any"},
            "messages": [user("x")],
        }
    ).request
    assert "temperature" not in out and "thinking" not in out
    assert out["tool_choice"] == {"type": "auto"}
    assert out["max_tokens"] == CONSERVATIVE.max_output_tokens


def test_connection_refused_is_unavailable() -> None:
    with StubAnthropic() as gone:
        url = gone.url  # a port that is closed once the stub stops
    client = LLMClient(api_key="k", base_url=url, model=MODEL, timeout_s=1.0, max_retries=0)
    with pytest.raises(LLMUnavailable) as info:
        client.complete(system=SYSTEM, messages=[user("hi")], max_tokens=64, offline=never)
    assert info.value.reason == "connection_error"


def test_logs_usage_but_never_prompt_or_answer(
    stub: StubAnthropic, caplog: pytest.LogCaptureFixture
) -> None:
    client = make_client(stub)
    with caplog.at_level(logging.INFO, logger="shared.llm"):
        result = client.complete(
            system=SYSTEM, messages=[user(SECRET_PROMPT)], max_tokens=64, offline=never
        )
    records = [r for r in caplog.records if r.name == "shared.llm"]
    assert records
    record = records[-1]
    assert record.__dict__["llm_model"] == MODEL
    assert record.__dict__["llm_input_tokens"] == result.usage.input_tokens
    assert record.__dict__["llm_cache_creation_input_tokens"] >= 0
    for r in records:
        dumped = repr(r.__dict__)
        assert SECRET_PROMPT not in dumped
        assert SYSTEM.strip() not in dumped


# -- stream ---------------------------------------------------------------------------------


def test_stream_yields_deltas_then_one_result(stub: StubAnthropic) -> None:
    client = make_client(stub)
    deltas, result = run_stream(
        client, system=SYSTEM, messages=[user("VPN drops")], max_tokens=256, offline=never
    )
    assert len(deltas) > 1
    assert "".join(deltas) == result.text
    assert "VPN drops" in result.text
    assert result.generator == "anthropic"
    assert result.stop_reason == "end_turn"
    assert result.usage.output_tokens > 1
    assert result.usage.cache_creation_input_tokens > 0
    assert stub.last_request is not None and stub.last_request["stream"] is True
    assert stub.last_request["system"][0]["cache_control"] == {"type": "ephemeral"}

    _, again = run_stream(
        client, system=SYSTEM, messages=[user("again")], max_tokens=256, offline=never
    )
    assert again.usage.cache_read_input_tokens > 0


def test_stream_retries_a_failure_before_the_first_byte(stub: StubAnthropic) -> None:
    client = make_client(stub, max_retries=1)
    stub.fail_next(status=529, times=1, retry_after=0.01)
    deltas, result = run_stream(
        client, system=SYSTEM, messages=[user("hi")], max_tokens=64, offline=never
    )
    assert "".join(deltas) == result.text
    assert stub.call_count == 2


def test_stream_persistent_overload_raises(stub: StubAnthropic) -> None:
    client = make_client(stub, max_retries=1)
    stub.fail_next(status=529, times=5, retry_after=0.01)
    with pytest.raises(LLMUnavailable) as info:
        list(client.stream(system=SYSTEM, messages=[user("hi")], max_tokens=64, offline=never))
    assert info.value.reason == "overloaded"
    assert stub.call_count == 2


def test_stream_broken_midway_raises_after_partial_deltas(stub: StubAnthropic) -> None:
    client = make_client(stub)
    stub.stream_error_next(error_type="overloaded_error", after_deltas=2)
    seen: list[str | LLMResult] = []
    with pytest.raises(LLMUnavailable) as info:
        for item in client.stream(
            system=SYSTEM, messages=[user("hi there")], max_tokens=64, offline=never
        ):
            seen.append(item)
    assert info.value.reason == "overloaded"
    assert len(seen) == 2 and all(isinstance(s, str) for s in seen)


def test_stream_stalled_midway_times_out(stub: StubAnthropic) -> None:
    client = make_client(stub, timeout_s=0.5)
    stub.stall_next(3.0, after_deltas=1)
    with pytest.raises(LLMUnavailable) as info:
        list(client.stream(system=SYSTEM, messages=[user("hi")], max_tokens=64, offline=never))
    assert info.value.reason == "timeout"


def test_stream_closed_early_releases_the_stream(stub: StubAnthropic) -> None:
    client = make_client(stub)
    gen = client.stream(system=SYSTEM, messages=[user("hi")], max_tokens=64, offline=never)
    first = next(gen)
    assert isinstance(first, str)
    gen.close()
    # The client still works afterwards.
    result = client.complete(system=SYSTEM, messages=[user("ok")], max_tokens=64, offline=never)
    assert result.generator == "anthropic"


# -- offline --------------------------------------------------------------------------------


def offline_text() -> str:
    return "Offline answer: check the DNS settings on the adapter and retry."


def test_offline_complete_and_stream() -> None:
    client = LLMClient(api_key=None, base_url=None, model=MODEL, timeout_s=1, max_retries=0)
    assert not client.online
    result = client.complete(
        system=SYSTEM, messages=[user("hi")], max_tokens=64, offline=offline_text
    )
    assert result == LLMResult(
        text=offline_text(),
        generator="offline",
        model="offline",
        usage=LLMUsage(),
        latency_ms=result.latency_ms,
    )
    deltas, streamed = run_stream(
        client, system=SYSTEM, messages=[user("hi")], max_tokens=64, offline=offline_text
    )
    assert len(deltas) > 1
    assert "".join(deltas) == streamed.text == offline_text()
    assert streamed.generator == "offline" and streamed.usage == LLMUsage()


def test_from_settings(stub: StubAnthropic) -> None:
    offline = LLMClient.from_settings(Settings(ANTHROPIC_API_KEY=None))
    assert not offline.online
    assert offline.model == "claude-sonnet-5-5"
    online = LLMClient.from_settings(
        Settings(
            ANTHROPIC_API_KEY="k",
            ANTHROPIC_BASE_URL=stub.url,
            ANTHROPIC_MODEL="claude-sonnet-4-6",
            LLM_TIMEOUT_S=2.0,
            LLM_MAX_RETRIES=0,
        )
    )
    assert online.online and online.model == "claude-sonnet-4-6"
    result = online.complete(system=SYSTEM, messages=[user("hi")], max_tokens=64, offline=never)
    assert result.model == "claude-sonnet-4-6"
    assert stub.calls[-1]["headers"]["authorization"] == "Bearer k"


# -- estimate_tokens / fit_history ----------------------------------------------------------


def test_estimate_tokens() -> None:
    assert estimate_tokens("") == 0
    assert estimate_tokens("abc") == 1
    assert estimate_tokens("abcd") == 1
    assert estimate_tokens("abcde") == 2
    assert estimate_tokens("x" * 400) == 100


def test_fit_history_keeps_everything_within_budget() -> None:
    history = [user("a"), assistant("b"), user("c")]
    assert fit_history(history, 1000) == history


def test_fit_history_drops_oldest_turns_first() -> None:
    history = [
        user("x" * 400),
        assistant("y" * 400),
        user("z" * 40),
        assistant("w" * 40),
        user("q"),
    ]
    kept = fit_history(history, 60)
    assert kept == [user("z" * 40), assistant("w" * 40), user("q")]


def test_fit_history_always_keeps_newest_user_message() -> None:
    history = [user("old"), assistant("reply"), user("n" * 10_000)]
    assert fit_history(history, 10) == [user("n" * 10_000)]


def test_fit_history_starts_with_a_user_turn() -> None:
    history = [user("x" * 400), assistant("a" * 40), user("b")]
    # Budget fits the assistant turn but not the user turn before it: the orphaned
    # assistant turn is dropped so the list starts with a user turn.
    assert fit_history(history, 30) == [user("b")]


def test_fit_history_merges_consecutive_same_role_turns() -> None:
    history = [
        assistant("greeting"),
        user("one"),
        user("two"),
        assistant("r1"),
        assistant(""),
        assistant("r2"),
        user("three"),
    ]
    assert fit_history(history, 1000) == [
        user("one\n\ntwo"),
        assistant("r1\n\nr2"),
        user("three"),
    ]


def test_fit_history_merges_block_content() -> None:
    history = [
        {"role": "user", "content": [{"type": "text", "text": "a"}]},
        user("b"),
    ]
    assert fit_history(history, 1000) == [
        {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}
    ]


def test_fit_history_edge_cases() -> None:
    assert fit_history([], 100) == []
    assert fit_history([assistant("only")], 100) == []
    history = [user("q"), assistant("a")]
    # Turns after the newest user message are newer still, so they are kept too.
    assert fit_history(history, 1) == history
    original = [user("a"), user("b")]
    fit_history(original, 100)
    assert original == [user("a"), user("b")], "the input is not modified"
