"""The Messages API stub, exercised with the real anthropic SDK (and raw HTTP where the SDK
would hide the detail under test)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import anthropic
import pytest
import requests
from anthropic.types import TextBlockParam

from tests.support.stub_anthropic import (
    StubAnthropic,
    StubAnthropicProcess,
    StubClient,
    default_responder,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
MODEL = os.environ.get("ANTHROPIC_MODEL") or "claude-sonnet-5-5"
# About 2,600 tokens: above every Sonnet's minimum cacheable length (1,024 or 2,048).
STABLE = "Stable instructions. " * 500
CACHED_SYSTEM: list[TextBlockParam] = [
    {"type": "text", "text": STABLE, "cache_control": {"type": "ephemeral"}},
    {"type": "text", "text": "Per-turn context."},
]


@pytest.fixture(scope="module")
def stub() -> Iterator[StubAnthropic]:
    with StubAnthropic() as server:
        yield server


@pytest.fixture(autouse=True)
def _fresh_stub(stub: StubAnthropic) -> Iterator[None]:
    stub.reset()
    yield
    stub.responder = default_responder


def sdk(url: str, *, max_retries: int = 0, timeout: float = 5.0) -> anthropic.Anthropic:
    return anthropic.Anthropic(
        api_key="test-key", base_url=url, max_retries=max_retries, timeout=timeout
    )


def ask(client: anthropic.Anthropic, text: str = "hello", **kwargs: Any) -> anthropic.types.Message:
    return client.messages.create(
        model=MODEL, max_tokens=128, messages=[{"role": "user", "content": text}], **kwargs
    )


def text_of(message: anthropic.types.Message) -> str:
    block = message.content[0]
    assert block.type == "text"
    return block.text


def test_create_returns_a_message(stub: StubAnthropic) -> None:
    message = ask(sdk(stub.url), "my mailbox is full")
    assert message.type == "message" and message.role == "assistant"
    assert message.id.startswith("msg_")
    assert message.model == MODEL
    assert message.stop_reason == "end_turn"
    assert message.content[0].type == "text"
    assert "my mailbox is full" in message.content[0].text
    usage = message.usage
    assert usage.input_tokens > 0 and usage.output_tokens > 0
    assert usage.cache_creation_input_tokens == 0 and usage.cache_read_input_tokens == 0
    assert stub.call_count == 1
    call = stub.calls[0]
    assert call["path"] == "/v1/messages"
    assert call["json"]["messages"] == [{"role": "user", "content": "my mailbox is full"}]
    assert "anthropic-version" in call["headers"]


def test_stream_emits_the_real_event_sequence(stub: StubAnthropic) -> None:
    client = sdk(stub.url)
    events = list(
        client.messages.create(
            model=MODEL,
            max_tokens=128,
            messages=[{"role": "user", "content": "stream me a longer answer please"}],
            stream=True,
        )
    )
    types = [event.type for event in events]
    deltas = [e for e in events if e.type == "content_block_delta"]
    assert types[:2] == ["message_start", "content_block_start"]
    assert types[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert len(deltas) >= 3
    assert set(types[2:-3]) == {"content_block_delta"}  # pings are skipped by the SDK

    with client.messages.stream(
        model=MODEL, max_tokens=128, messages=[{"role": "user", "content": "again"}]
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert final.content[0].type == "text" and final.content[0].text == text
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens > 1


def test_raw_stream_includes_ping_and_chunked_sse(stub: StubAnthropic) -> None:
    response = requests.post(
        f"{stub.url}/v1/messages",
        headers={"x-api-key": "k"},
        json={
            "model": MODEL,
            "max_tokens": 5,
            "stream": True,
            "messages": [{"role": "user", "content": "x"}],
        },
        timeout=5,
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    names = [line[7:] for line in response.text.splitlines() if line.startswith("event: ")]
    assert names[:3] == ["message_start", "content_block_start", "ping"]
    assert names[-1] == "message_stop"


def test_api_key_is_required(stub: StubAnthropic) -> None:
    body: dict[str, Any] = {
        "model": MODEL,
        "max_tokens": 5,
        "messages": [{"role": "user", "content": "x"}],
    }
    missing = requests.post(f"{stub.url}/v1/messages", json=body, timeout=5)
    assert missing.status_code == 401
    assert missing.json()["type"] == "error"
    assert missing.json()["error"]["type"] == "authentication_error"
    ok = requests.post(f"{stub.url}/v1/messages", json=body, headers={"x-api-key": "k"}, timeout=5)
    assert ok.status_code == 200
    assert stub.call_count == 2  # every request is recorded, rejected ones too


def test_invalid_request_gets_400(stub: StubAnthropic) -> None:
    with pytest.raises(anthropic.BadRequestError) as info:
        sdk(stub.url).messages.create(model=MODEL, max_tokens=5, messages=[])
    assert info.value.type == "invalid_request_error"


@pytest.mark.parametrize(
    ("status", "error_class", "error_type"),
    [
        (429, anthropic.RateLimitError, "rate_limit_error"),
        (529, anthropic.OverloadedError, "overloaded_error"),
        (500, anthropic.InternalServerError, "api_error"),
        (408, anthropic.RequestTimeoutError, "timeout_error"),
    ],
)
def test_scripted_failures_map_to_sdk_errors(
    stub: StubAnthropic, status: int, error_class: type[anthropic.APIStatusError], error_type: str
) -> None:
    stub.fail_next(status=status, times=1, retry_after=7)
    with pytest.raises(error_class) as info:
        ask(sdk(stub.url))
    assert info.value.status_code == status
    assert info.value.type == error_type
    assert info.value.response.headers["retry-after"] == "7"
    assert isinstance(info.value, anthropic.InternalServerError) == (status >= 500)
    assert ask(sdk(stub.url)).content, "a failure is consumed by one call"


def test_failures_are_consumed_one_per_call_in_order(stub: StubAnthropic) -> None:
    stub.fail_next(status=429, times=2, retry_after=0.01)
    stub.fail_next(status=529, times=1, retry_after=0.01)
    message = ask(sdk(stub.url, max_retries=3))
    assert message.content
    assert stub.call_count == 4


def test_delay_forces_a_client_timeout(stub: StubAnthropic) -> None:
    stub.delay_next(3.0, times=1)
    with pytest.raises(anthropic.APITimeoutError):
        ask(sdk(stub.url, timeout=0.3))
    assert ask(sdk(stub.url, timeout=2)).content


def test_timed_out_request_does_not_consume_a_queued_answer(stub: StubAnthropic) -> None:
    stub.queue_responses("for the retry")
    stub.delay_next(2.0, times=1)
    message = ask(sdk(stub.url, timeout=0.3, max_retries=1))
    assert text_of(message) == "for the retry"
    assert stub.call_count == 2


def test_stream_error_event_midway(stub: StubAnthropic) -> None:
    stub.stream_error_next(error_type="overloaded_error", after_deltas=1)
    received: list[str] = []
    with pytest.raises(anthropic.APIStatusError) as info:
        with sdk(stub.url).messages.stream(
            model=MODEL, max_tokens=64, messages=[{"role": "user", "content": "hello there"}]
        ) as stream:
            for text in stream.text_stream:
                received.append(text)
    assert info.value.type == "overloaded_error"
    assert len(received) == 1


def test_note_requests_get_a_four_section_note(stub: StubAnthropic) -> None:
    message = ask(
        sdk(stub.url),
        "Symptom: Outlook prompts for a password\nConfirmed: modern auth disabled\n"
        "Fix applied: enabled modern auth",
        system="Write notes with sections ## Problem, ## What we confirmed, ## Root cause, "
        "## Resolution.",
    )
    text = text_of(message)
    headings = [line for line in text.splitlines() if line.startswith("## ")]
    assert headings == ["## Problem", "## What we confirmed", "## Root cause", "## Resolution"]
    assert "Outlook prompts for a password" in text
    assert "modern auth disabled" in text


def test_custom_responder_and_queued_responses(stub: StubAnthropic) -> None:
    stub.responder = lambda request: f"custom:{request['messages'][-1]['content']}"
    stub.queue_responses("first fixed", "second fixed")
    client = sdk(stub.url)
    answers = [text_of(ask(client, f"q{i}")) for i in range(3)]
    assert answers == ["first fixed", "second fixed", "custom:q2"]


def test_prompt_caching_is_simulated(stub: StubAnthropic) -> None:
    client = sdk(stub.url)
    first = ask(client, "one", system=CACHED_SYSTEM).usage
    second = ask(client, "two", system=CACHED_SYSTEM).usage
    other_model = client.messages.create(
        model="claude-sonnet-5" if MODEL != "claude-sonnet-5" else "claude-sonnet-5-5",
        max_tokens=5,
        system=CACHED_SYSTEM,
        messages=[{"role": "user", "content": "x"}],
    ).usage
    uncached = ask(client, "three", system=STABLE).usage
    assert first.cache_creation_input_tokens and not first.cache_read_input_tokens
    assert second.cache_read_input_tokens == first.cache_creation_input_tokens
    assert not second.cache_creation_input_tokens
    assert other_model.cache_creation_input_tokens, "the cache is per model"
    assert not uncached.cache_creation_input_tokens and not uncached.cache_read_input_tokens
    assert uncached.input_tokens > first.input_tokens

    stub.reset()
    assert ask(client, "four", system=CACHED_SYSTEM).usage.cache_creation_input_tokens


def test_cache_min_tokens_mirrors_the_api_minimum() -> None:
    with StubAnthropic(cache_min_tokens=4096) as small:
        usage = ask(sdk(small.url), "x", system=CACHED_SYSTEM).usage
    assert not usage.cache_creation_input_tokens and not usage.cache_read_input_tokens


def test_serves_many_requests_concurrently() -> None:
    # 20 x 1 s: one at a time would take 20 s; concurrent, less, even on a machine whose
    # cores are busy (the bound is loose on purpose: load stretches each call).
    with StubAnthropic(latency_s=1.0) as slow:
        client = sdk(slow.url)
        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=20) as pool:
            answers = list(pool.map(lambda i: ask(client, f"q{i}"), range(20)))
        elapsed = time.perf_counter() - started
        assert len(answers) == 20 and slow.call_count == 20
    assert elapsed < 18.0, f"20 x 1 s answered in {elapsed:.2f} s: not concurrent"


def test_reset_clears_calls_and_scripts(stub: StubAnthropic) -> None:
    stub.fail_next(status=529, times=3)
    stub.queue_responses("never used")
    stub.latency_s = 5.0
    stub.reset()
    assert stub.call_count == 0 and stub.latency_s == 0.0
    assert text_of(ask(sdk(stub.url))) != "never used"


def test_runs_as_its_own_process_with_control_endpoints() -> None:
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    with StubAnthropicProcess(cwd=str(REPO_ROOT), env=env) as proc:
        assert proc.url.startswith("http://127.0.0.1:")
        control = proc.client
        assert isinstance(control, StubClient)
        client = sdk(proc.url, max_retries=1)

        control.responses(["scripted answer"])
        assert text_of(ask(client)) == "scripted answer"

        control.fail(status=429, times=1, retry_after=0.01)
        assert ask(client).content
        assert control.call_count == 3

        control.delay(3.0, times=1)
        with pytest.raises(anthropic.APITimeoutError):
            ask(sdk(proc.url, timeout=0.3))

        control.stream_error(after_deltas=0)
        with pytest.raises(anthropic.APIStatusError):
            with client.messages.stream(
                model=MODEL, max_tokens=5, messages=[{"role": "user", "content": "x"}]
            ) as stream:
                stream.get_final_message()

        control.latency(0.2)
        started = time.perf_counter()
        ask(client)
        assert time.perf_counter() - started >= 0.2

        calls = control.calls()
        assert len(calls) == control.call_count == 6
        assert calls[0]["json"]["model"] == MODEL
        json.dumps(calls)  # plain JSON

        control.reset()
        assert control.call_count == 0
        assert proc.proc is not None
        pid_process = proc.proc
    assert pid_process.returncode == 0, "SIGTERM stops the stub cleanly"


# ── Strictness: what the real API refuses, per model ──────────────────────────────────────────


def raw(stub: StubAnthropic, body: dict[str, Any]) -> requests.Response:
    return requests.post(
        f"{stub.url}/v1/messages", json=body, headers={"x-api-key": "k"}, timeout=5
    )


def body(model: str = "claude-sonnet-5-5", **extra: Any) -> dict[str, Any]:
    return {
        "model": model,
        "max_tokens": 64,
        "messages": [{"role": "user", "content": "hi"}],
        **extra,
    }


REFUSED_BY_SONNET_5_5: list[tuple[str, dict[str, Any]]] = [
    ("temperature", {"temperature": 0.2}),
    ("top_p", {"top_p": 0.9}),
    ("top_k", {"top_k": 5}),
    (
        "prefill",
        {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "##"}]},
    ),
    ("thinking budget", {"thinking": {"type": "enabled", "budget_tokens": 2048}}),
    ("thinking disabled", {"thinking": {"type": "disabled"}}),
    (
        "forced tool",
        {
            "tools": [{"name": "t", "input_schema": {"type": "object"}}],
            "tool_choice": {"type": "any"},
        },
    ),
    ("max_tokens", {"max_tokens": 128_001}),
]


@pytest.mark.parametrize(
    "what, extra", REFUSED_BY_SONNET_5_5, ids=[w for w, _ in REFUSED_BY_SONNET_5_5]
)
def test_sonnet_5_5_refuses_what_the_migration_guide_lists(
    stub: StubAnthropic, what: str, extra: dict[str, Any]
) -> None:
    response = raw(stub, body(**extra))
    assert response.status_code == 400, what
    payload = response.json()
    assert payload["type"] == "error"
    assert payload["error"]["type"] == "invalid_request_error"
    assert payload["error"]["message"]
    assert stub.refusals[-1]["status"] == 400


def test_sonnet_4_6_takes_sampling_but_not_prefill_nor_both_temperature_and_top_p(
    stub: StubAnthropic,
) -> None:
    assert raw(stub, body("claude-sonnet-4-6", temperature=0.2)).status_code == 200
    assert raw(stub, body("claude-sonnet-4-6", temperature=0.2, top_p=0.9)).status_code == 400
    prefill = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "##"}]
    assert raw(stub, body("claude-sonnet-4-6", messages=prefill)).status_code == 400
    assert raw(stub, body("claude-sonnet-4-6", max_tokens=64_001)).status_code == 400
    assert raw(stub, body("claude-sonnet-4-6", max_tokens=64_000)).status_code == 200


def test_unknown_model_is_a_404_not_found_error(stub: StubAnthropic) -> None:
    response = raw(stub, body("claude-nonexistent-9"))
    assert response.status_code == 404
    assert response.json()["error"]["type"] == "not_found_error"


@pytest.mark.parametrize(
    "messages",
    [
        [{"role": "assistant", "content": "first"}, {"role": "user", "content": "hi"}],
        [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}],
        [{"role": "user", "content": ""}],
        [{"role": "system", "content": "x"}],
    ],
    ids=["starts-with-assistant", "same-role-twice", "empty", "bad-role"],
)
def test_roles_must_alternate_from_a_user_turn(
    stub: StubAnthropic, messages: list[dict[str, Any]]
) -> None:
    assert raw(stub, body(messages=messages)).status_code == 400


def test_system_must_be_a_string_or_text_blocks(stub: StubAnthropic) -> None:
    assert raw(stub, body(system="plain")).status_code == 200
    assert raw(stub, body(system=[{"type": "text", "text": "ok"}])).status_code == 200
    assert raw(stub, body(system=[{"type": "image", "source": {}}])).status_code == 400
    assert raw(stub, body(system={"text": "no"})).status_code == 400


def test_at_most_four_cache_breakpoints_and_1h_before_5m(stub: StubAnthropic) -> None:
    def marked(n: int, ttl: str = "5m") -> list[dict[str, Any]]:
        return [
            {"type": "text", "text": f"b{i}", "cache_control": {"type": "ephemeral", "ttl": ttl}}
            for i in range(n)
        ]

    assert raw(stub, body(system=marked(4))).status_code == 200
    response = raw(stub, body(system=marked(5)))
    assert response.status_code == 400
    assert "maximum of 4" in response.json()["error"]["message"]
    assert raw(stub, body(system=marked(1, "5m") + marked(1, "1h"))).status_code == 400
    assert raw(stub, body(system=marked(1, "1h") + marked(1, "5m"))).status_code == 200
    assert raw(stub, body(system=marked(1, "2h"))).status_code == 400


# ── Prompt caching: byte-exact prefixes, TTL, minimums ────────────────────────────────────────


def test_cache_needs_the_byte_exact_prefix(stub: StubAnthropic) -> None:
    client = sdk(stub.url)
    first = ask(client, "a", system=CACHED_SYSTEM).usage
    changed: list[TextBlockParam] = [
        {"type": "text", "text": STABLE + " ", "cache_control": {"type": "ephemeral"}}
    ]
    one_byte_more = ask(client, "b", system=changed).usage
    assert first.cache_creation_input_tokens > 0
    assert one_byte_more.cache_read_input_tokens == 0
    assert one_byte_more.cache_creation_input_tokens > 0


def test_cache_entry_expires_after_its_ttl_and_a_hit_refreshes_it(stub: StubAnthropic) -> None:
    client = sdk(stub.url)
    assert ask(client, "a", system=CACHED_SYSTEM).usage.cache_creation_input_tokens
    stub.advance_clock(299)
    assert ask(client, "b", system=CACHED_SYSTEM).usage.cache_read_input_tokens  # refreshed
    stub.advance_clock(299)
    assert ask(client, "c", system=CACHED_SYSTEM).usage.cache_read_input_tokens
    stub.advance_clock(301)
    late = ask(client, "d", system=CACHED_SYSTEM).usage
    assert late.cache_read_input_tokens == 0 and late.cache_creation_input_tokens > 0

    one_hour: list[TextBlockParam] = [
        {"type": "text", "text": STABLE, "cache_control": {"type": "ephemeral", "ttl": "1h"}}
    ]
    written = ask(client, "e", system=one_hour).usage
    assert written.cache_creation is not None
    assert written.cache_creation.ephemeral_1h_input_tokens == written.cache_creation_input_tokens
    stub.advance_clock(3000)
    assert ask(client, "f", system=one_hour).usage.cache_read_input_tokens


def test_below_the_model_minimum_nothing_is_cached(stub: StubAnthropic) -> None:
    short: list[TextBlockParam] = [
        {"type": "text", "text": "x" * 4000, "cache_control": {"type": "ephemeral"}}
    ]  # ~1,000 tokens: below every Sonnet minimum
    client = sdk(stub.url)
    for text in ("a", "b"):
        usage = ask(client, text, system=short).usage
        assert usage.cache_creation_input_tokens == 0 and usage.cache_read_input_tokens == 0
    # 1,500 tokens: cached by Sonnet 5.5 (1,024) but not by Sonnet 4.6 (2,048).
    middle: list[TextBlockParam] = [
        {"type": "text", "text": "y" * 6000, "cache_control": {"type": "ephemeral"}}
    ]
    for model, cached in (("claude-sonnet-5-5", True), ("claude-sonnet-4-6", False)):
        usage = client.messages.create(
            model=model, max_tokens=8, system=middle, messages=[{"role": "user", "content": "q"}]
        ).usage
        assert bool(usage.cache_creation_input_tokens) is cached, model


def test_cache_counters_add_up_to_the_whole_prompt(stub: StubAnthropic) -> None:
    client = sdk(stub.url)
    first = ask(client, "same question", system=CACHED_SYSTEM).usage
    second = ask(client, "same question", system=CACHED_SYSTEM).usage
    whole = first.input_tokens + first.cache_creation_input_tokens
    assert whole == second.input_tokens + (second.cache_read_input_tokens or 0)


# ── Message Batches ─────────────────────────────────────────────────────────────────────────


def test_batches_create_poll_and_results_through_the_sdk(stub: StubAnthropic) -> None:
    client = sdk(stub.url)
    stub.batch_polls_before_end = 1
    batch = client.messages.batches.create(
        requests=[
            {
                "custom_id": "good",
                "params": {
                    "model": MODEL,
                    "max_tokens": 64,
                    "messages": [{"role": "user", "content": "hello"}],
                },
            },
            {
                "custom_id": "bad",
                "params": {
                    "model": MODEL,
                    "max_tokens": 64,
                    "messages": [
                        {"role": "user", "content": "hello"},
                        {"role": "assistant", "content": "prefill"},
                    ],
                },
            },
        ]
    )
    assert batch.processing_status == "in_progress" and batch.id.startswith("msgbatch_")
    assert client.messages.batches.retrieve(batch.id).processing_status == "in_progress"
    ended = client.messages.batches.retrieve(batch.id)
    assert ended.processing_status == "ended"
    assert ended.request_counts.succeeded == 1 and ended.request_counts.errored == 1
    results = {r.custom_id: r.result for r in client.messages.batches.results(batch.id)}
    assert results["good"].type == "succeeded"
    assert results["good"].message.usage.output_tokens > 0  # type: ignore[union-attr]
    assert results["bad"].type == "errored"
    assert stub.batch_submissions[0]["id"] == batch.id


def test_structured_output_schemas_must_close_every_object(stub: StubAnthropic) -> None:
    def schema(inner: dict[str, Any]) -> dict[str, Any]:
        return {"format": {"type": "json_schema", "schema": inner}}

    closed = {
        "type": "object",
        "additionalProperties": False,
        "properties": {"a": {"type": "array", "items": {"type": "string"}}},
    }
    assert raw(stub, body(output_config=schema(closed))).status_code == 200
    open_inner = {
        "type": "object",
        "additionalProperties": False,
        "properties": {"a": {"type": "object", "properties": {}}},
    }
    refused = raw(stub, body(output_config=schema(open_inner)))
    assert refused.status_code == 400
    assert "additionalProperties" in refused.json()["error"]["message"]


def test_template_parameter_requests_get_the_suggested_literals(stub: StubAnthropic) -> None:
    literals = [
        {
            "value": "PRN-SRV01",
            "bound_to": "ComputerName",
            "suggested": {"key": "computer", "type": "hostname"},
        },
        {"value": "Status", "bound_to": None},
    ]
    prompt = f"Propose.\n\n<literals>\n{json.dumps(literals)}\n</literals>\n"
    output = {
        "format": {
            "type": "json_schema",
            "schema": {"type": "object", "additionalProperties": False, "properties": {}},
        }
    }
    answer = raw(stub, body(messages=[{"role": "user", "content": prompt}], output_config=output))
    assert answer.status_code == 200
    proposal = json.loads(answer.json()["content"][0]["text"])
    assert proposal == {
        "parameters": [
            {
                "literal": "PRN-SRV01",
                "key": "computer",
                "label": "Computer",
                "type": "hostname",
                "help": "The computer this script acts on.",
            }
        ],
        "keep_as_written": [],
    }
