"""LLMClient.complete_json: structured outputs through the real SDK against the local stub."""

from __future__ import annotations

import json

from shared.llm import LLMClient
from tests.support.stub_anthropic import StubAnthropic

SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["answer"],
    "properties": {"answer": {"type": "string"}},
}


def test_complete_json_asks_for_the_schema_and_nothing_a_model_may_refuse() -> None:
    with StubAnthropic(responder=lambda request: json.dumps({"answer": "42"})) as stub:
        llm = LLMClient(
            api_key="test", base_url=stub.url, model="claude-sonnet-5-5", timeout_s=5, max_retries=0
        )
        try:
            result = llm.complete_json(
                system="Answer in JSON.",
                messages=[{"role": "user", "content": "What is six times seven?"}],
                max_tokens=100,
                schema=SCHEMA,
                offline=lambda: "{}",
            )
        finally:
            llm.close()
        [call] = stub.calls
    assert json.loads(result.text) == {"answer": "42"} and result.generator == "anthropic"
    sent = call["json"]
    assert sent["output_config"] == {"format": {"type": "json_schema", "schema": SCHEMA}}
    for refused in ("temperature", "top_p", "top_k", "tool_choice", "thinking"):
        assert refused not in sent
    assert sent["messages"][-1]["role"] == "user"


def test_complete_json_offline_answers_from_the_callback() -> None:
    llm = LLMClient(api_key=None, base_url=None, model="m", timeout_s=1, max_retries=0)
    result = llm.complete_json(
        system="s", messages=[], max_tokens=10, schema=SCHEMA, offline=lambda: '{"answer": "x"}'
    )
    assert (result.text, result.generator) == ('{"answer": "x"}', "offline")
