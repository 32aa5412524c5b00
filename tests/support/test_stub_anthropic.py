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
MODEL = "claude-sonnet-4-6"
CACHED_SYSTEM: list[TextBlockParam] = [
    {"type": "text", "text": "Stable instructions. " * 50, "cache_control": {"type": "ephemeral"}},
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
        model="claude-other",
        max_tokens=5,
        system=CACHED_SYSTEM,
        messages=[{"role": "user", "content": "x"}],
    ).usage
    uncached = ask(client, "three", system="Stable instructions. " * 50).usage
    assert first.cache_creation_input_tokens and not first.cache_read_input_tokens
    assert second.cache_read_input_tokens == first.cache_creation_input_tokens
    assert not second.cache_creation_input_tokens
    assert other_model.cache_creation_input_tokens, "the cache is per model"
    assert not uncached.cache_creation_input_tokens and not uncached.cache_read_input_tokens
    assert uncached.input_tokens > first.input_tokens

    stub.reset()
    assert ask(client, "four", system=CACHED_SYSTEM).usage.cache_creation_input_tokens


def test_cache_min_tokens_mirrors_the_api_minimum() -> None:
    with StubAnthropic(cache_min_tokens=2048) as small:
        usage = ask(sdk(small.url), "x", system=CACHED_SYSTEM).usage
    assert not usage.cache_creation_input_tokens and not usage.cache_read_input_tokens


def test_serves_many_requests_concurrently() -> None:
    # 20 x 1 s: one at a time would take 20 s; concurrent well under half that, even on a
    # machine whose cores are busy.
    with StubAnthropic(latency_s=1.0) as slow:
        client = sdk(slow.url)
        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=20) as pool:
            answers = list(pool.map(lambda i: ask(client, f"q{i}"), range(20)))
        elapsed = time.perf_counter() - started
        assert len(answers) == 20 and slow.call_count == 20
    assert elapsed < 10.0, f"20 x 1 s answered in {elapsed:.2f} s: not concurrent"


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
