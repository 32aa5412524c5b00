"""The model table: what each family accepts, and the cost arithmetic, pinned with recorded
``usage`` blocks (the JSON the Messages API returns, streamed and not, cached and not)."""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal
from typing import Any

import pytest

from shared.llm import usage_from
from shared.llm_models import (
    CONSERVATIVE,
    FAMILIES,
    RequestNotSupported,
    conform_request,
    spec_for,
)
from shared.usage import usage_cost

# Recorded usage blocks (shape of the API's JSON; figures from real-looking calls).
NOT_CACHED = json.loads(
    '{"input_tokens": 1850, "output_tokens": 412, "cache_creation_input_tokens": 0,'
    ' "cache_read_input_tokens": 0}'
)
CACHE_WRITE_5M = json.loads(
    '{"input_tokens": 310, "output_tokens": 95, "cache_creation_input_tokens": 3120,'
    ' "cache_read_input_tokens": 0, "cache_creation": {"ephemeral_5m_input_tokens": 3120,'
    ' "ephemeral_1h_input_tokens": 0}}'
)
CACHE_READ = json.loads(
    '{"input_tokens": 402, "output_tokens": 233, "cache_creation_input_tokens": 0,'
    ' "cache_read_input_tokens": 3120}'
)
MIXED_TTL = json.loads(
    '{"input_tokens": 50, "output_tokens": 10, "cache_creation_input_tokens": 3000,'
    ' "cache_read_input_tokens": 0, "cache_creation": {"ephemeral_5m_input_tokens": 1000,'
    ' "ephemeral_1h_input_tokens": 2000}}'
)
# A stream: message_start carries the input side, message_delta the final output count; the
# SDK's accumulated message has both. Recorded events:
STREAM_START = json.loads(
    '{"type": "message_start", "message": {"usage": {"input_tokens": 280,'
    ' "cache_creation_input_tokens": 0, "cache_read_input_tokens": 3120,'
    ' "output_tokens": 1}}}'
)
STREAM_DELTA = json.loads('{"type": "message_delta", "usage": {"output_tokens": 517}}')


def streamed_usage() -> dict[str, Any]:
    usage = dict(STREAM_START["message"]["usage"])
    usage["output_tokens"] = STREAM_DELTA["usage"]["output_tokens"]
    return usage


AFTER_CUT = date(2026, 12, 1)  # Sonnet 5.5 cache reads at $0.10
BEFORE_CUT = date(2026, 10, 1)  # ... and at $0.20


@pytest.mark.parametrize(
    ("model", "block", "day", "batch", "expected"),
    [
        # 1850 x 2 + 412 x 10 = 3700 + 4120 = 7820 micro-dollars
        ("claude-sonnet-5-5", NOT_CACHED, AFTER_CUT, False, "0.007820"),
        # 310 x 2 + 95 x 10 + 3120 x 2.50 = 620 + 950 + 7800 = 9370
        ("claude-sonnet-5-5", CACHE_WRITE_5M, AFTER_CUT, False, "0.009370"),
        # 402 x 2 + 233 x 10 + 3120 x 0.10 = 804 + 2330 + 312 = 3446
        ("claude-sonnet-5-5", CACHE_READ, AFTER_CUT, False, "0.003446"),
        # the same before the 2026-10-07 cut: 3120 x 0.20 = 624 -> 3758
        ("claude-sonnet-5-5", CACHE_READ, BEFORE_CUT, False, "0.003758"),
        # 50 x 2 + 10 x 10 + 1000 x 2.50 + 2000 x 4 = 100 + 100 + 2500 + 8000 = 10700
        ("claude-sonnet-5-5", MIXED_TTL, AFTER_CUT, False, "0.010700"),
        # streamed: 280 x 2 + 517 x 10 + 3120 x 0.10 = 560 + 5170 + 312 = 6042
        ("claude-sonnet-5-5", streamed_usage(), AFTER_CUT, False, "0.006042"),
        # batch halves input and output only: 3700/2 + 4120/2 = 3910
        ("claude-sonnet-5-5", NOT_CACHED, AFTER_CUT, True, "0.003910"),
        # batch with a cache read: (804 + 2330)/2 + 312 = 1879
        ("claude-sonnet-5-5", CACHE_READ, AFTER_CUT, True, "0.001879"),
        # Sonnet 4.6: 1850 x 3 + 412 x 15 = 5550 + 6180 = 11730
        ("claude-sonnet-4-6", NOT_CACHED, AFTER_CUT, False, "0.011730"),
        # 310 x 3 + 95 x 15 + 3120 x 3.75 = 930 + 1425 + 11700 = 14055
        ("claude-sonnet-4-6", CACHE_WRITE_5M, AFTER_CUT, False, "0.014055"),
        # 402 x 3 + 233 x 15 + 3120 x 0.30 = 1206 + 3495 + 936 = 5637
        ("claude-sonnet-4-6", CACHE_READ, AFTER_CUT, False, "0.005637"),
        # dated ids price as their family
        ("claude-sonnet-4-6-20260217", CACHE_READ, AFTER_CUT, False, "0.005637"),
    ],
)
def test_golden_costs(
    model: str, block: dict[str, Any], day: date, batch: bool, expected: str
) -> None:
    assert usage_cost(model, usage_from(block), on=day, batch=batch) == Decimal(expected)


def test_unknown_model_is_priced_at_the_highest_known_prices() -> None:
    cost = usage_cost("claude-mystery-1", usage_from(NOT_CACHED), on=AFTER_CUT)
    highest = max(usage_cost(f.family, usage_from(NOT_CACHED), on=AFTER_CUT) for f in FAMILIES)
    assert cost >= highest
    assert spec_for("claude-mystery-1") is CONSERVATIVE


def test_every_family_has_dated_prices_in_order_and_sane_limits() -> None:
    for spec in FAMILIES:
        days = [p.effective for p in spec.prices]
        assert days == sorted(days), spec.family
        assert spec.max_output_tokens >= 32_000
        assert spec.min_cacheable_tokens in (1024, 2048, 4096)
        for p in spec.prices:
            assert p.cache_read < p.input < p.cache_write_5m < p.cache_write_1h < p.output


def test_longest_prefix_wins() -> None:
    assert spec_for("claude-sonnet-5-5").family == "claude-sonnet-5-5"
    assert spec_for("claude-sonnet-5").family == "claude-sonnet-5"
    assert spec_for("claude-sonnet-5-20260501").family == "claude-sonnet-5"
    assert spec_for("claude-sonnet-5-5-20261001").family == "claude-sonnet-5-5"


def request(model: str, **extra: Any) -> dict[str, Any]:
    return {
        "model": model,
        "max_tokens": 100,
        "messages": [{"role": "user", "content": "x"}],
        **extra,
    }


def test_sonnet_5_5_loses_what_it_refuses() -> None:
    out = conform_request(
        request(
            "claude-sonnet-5-5",
            temperature=0.2,
            top_p=0.9,
            top_k=3,
            extra_body={"temperature": 0.1},
            thinking={"type": "disabled"},
            tool_choice={"type": "tool", "name": "t"},
            output_config={"effort": "extreme"},
        )
    )
    r = out.request
    for name in ("temperature", "top_p", "top_k", "thinking", "extra_body", "output_config"):
        assert name not in r, name
    assert r["tool_choice"] == {"type": "auto"}
    assert {name for name, _ in out.adjustments} >= {"temperature", "extra_body.temperature"}


def test_sonnet_4_6_keeps_sampling_and_manual_thinking() -> None:
    r = conform_request(
        request(
            "claude-sonnet-4-6",
            temperature=0.2,
            thinking={"type": "enabled", "budget_tokens": 2048},
            output_config={"effort": "high"},
        )
    ).request
    assert r["temperature"] == 0.2
    assert r["thinking"]["type"] == "enabled"
    assert r["output_config"] == {"effort": "high"}


def test_prefill_and_too_many_breakpoints_are_refused() -> None:
    prefill = request("claude-sonnet-4-6")
    prefill["messages"] = [*prefill["messages"], {"role": "assistant", "content": "##"}]
    with pytest.raises(RequestNotSupported, match="prefill"):
        conform_request(prefill)
    assert conform_request({**prefill, "model": "claude-haiku-4-5"}).request  # Haiku 4.5 takes it
    marked = [
        {"type": "text", "text": str(i), "cache_control": {"type": "ephemeral"}} for i in range(5)
    ]
    with pytest.raises(RequestNotSupported, match="breakpoints"):
        conform_request(request("claude-sonnet-5-5", system=marked))
