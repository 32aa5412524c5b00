"""The client: one `anthropic.Anthropic` client per process, every request conformed to its
model, offline answers without an API key, and the usage of every call logged."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any, cast

import anthropic
import httpx2

from shared.llm.results import (
    GENERATOR_ANTHROPIC,
    GENERATOR_OFFLINE,
    OFFLINE_MODEL,
    LLMResult,
    LLMUnavailable,
    LLMUsage,
    _api_error_text,
    _classify,
    _usage,
)
from shared.llm_models import ModelSpec, RequestNotSupported, conform_request, spec_for

if TYPE_CHECKING:
    from shared.config import Settings


# One logger for the package, named as it was when the package was one module.
logger = logging.getLogger("shared.llm")


_CACHE_CONTROL: dict[str, str] = {"type": "ephemeral"}


def _system_blocks(system: str | list[dict[str, Any]], cache_system: bool) -> list[dict[str, Any]]:
    """The system prompt as a list of text blocks, the stable one marked for caching.

    A string becomes one block. In a list, the first block is taken to be the stable prompt
    (put per-request context in later blocks); a list that already marks a block with
    ``cache_control`` is sent as given.
    """
    if isinstance(system, str):
        if not system:
            return []
        block: dict[str, Any] = {"type": "text", "text": system}
        if cache_system:
            block["cache_control"] = dict(_CACHE_CONTROL)
        return [block]
    blocks = [dict(b) for b in system if b.get("text")]
    if cache_system and blocks and not any("cache_control" in b for b in blocks):
        blocks[0]["cache_control"] = dict(_CACHE_CONTROL)
    return blocks


def _message_text(message: Any) -> str:
    return "".join(
        block.text for block in message.content if getattr(block, "type", None) == "text"
    )


def _offline_chunks(text: str, pieces: int = 4) -> list[str]:
    """Split text into a few chunks at word boundaries, for the offline stream."""
    if not text:
        return []
    words = text.split(" ")
    size = max(1, math.ceil(len(words) / pieces))
    chunks = [" ".join(words[i : i + size]) for i in range(0, len(words), size)]
    return [chunk + " " for chunk in chunks[:-1]] + chunks[-1:]


def _elapsed_ms(start: float) -> int:
    return int((time.perf_counter() - start) * 1000)


class LLMClient:
    """Completions and streams from Claude, or from the caller's offline generator."""

    def __init__(
        self,
        *,
        api_key: str | None,
        base_url: str | None,
        model: str,
        timeout_s: float,
        max_retries: int,
    ) -> None:
        self.model = model
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self._client: anthropic.Anthropic | None = None
        if api_key:
            # base_url=None lets the SDK fall back to ANTHROPIC_BASE_URL, then the public API.
            self._client = anthropic.Anthropic(
                api_key=api_key,
                base_url=base_url or None,
                max_retries=max_retries,
                timeout=timeout_s,
            )

    @classmethod
    def from_settings(cls, settings: Settings) -> LLMClient:
        return cls(
            api_key=settings.ANTHROPIC_API_KEY,
            base_url=settings.ANTHROPIC_BASE_URL,
            model=settings.ANTHROPIC_MODEL,
            timeout_s=settings.LLM_TIMEOUT_S,
            max_retries=settings.LLM_MAX_RETRIES,
        )

    @property
    def online(self) -> bool:
        """Whether an API key is configured (otherwise every call is answered offline)."""
        return self._client is not None

    def close(self) -> None:
        """Release the HTTP connections (the client must not be used afterwards)."""
        if self._client is not None:
            self._client.close()

    # -- public API -------------------------------------------------------------------------

    def complete(
        self,
        *,
        system: str | list[dict[str, Any]],
        messages: list[dict[str, Any]],
        max_tokens: int,
        offline: Callable[[], str],
        cache_system: bool = True,
        temperature: float | None = None,
    ) -> LLMResult:
        """One answer. Raises :class:`LLMUnavailable` when online and the API cannot answer.

        ``temperature`` is a wish, not an order: it is sent only to models that accept sampling
        parameters (see :mod:`shared.llm_models`), in the request body (the SDK no longer
        types it); models that refuse it never see it.
        """
        start = time.perf_counter()
        client = self._client
        if client is None:
            return self._offline_result(offline, start, "complete")

        request = self._request_kwargs(
            system, messages, max_tokens, cache_system, temperature=temperature, start=start
        )
        return self._create(client, request, start, "complete")

    def complete_json(
        self,
        *,
        system: str | list[dict[str, Any]],
        messages: list[dict[str, Any]],
        max_tokens: int,
        schema: dict[str, Any],
        offline: Callable[[], str],
        cache_system: bool = True,
    ) -> LLMResult:
        """One answer constrained to ``schema`` (structured outputs: ``output_config.format``
        of type ``json_schema``); ``LLMResult.text`` is then the JSON document. No sampling
        parameters, prefill or tool choice are sent: stability comes from the prompt and the
        schema. Offline, ``offline()`` answers (it should return a document of the same
        shape). Raises :class:`LLMUnavailable` like :meth:`complete`.
        """
        start = time.perf_counter()
        client = self._client
        if client is None:
            return self._offline_result(offline, start, "complete_json")
        request = self._request_kwargs(system, messages, max_tokens, cache_system, start=start)
        request["output_config"] = {"format": {"type": "json_schema", "schema": schema}}
        return self._create(client, request, start, "complete_json")

    def stream(
        self,
        *,
        system: str | list[dict[str, Any]],
        messages: list[dict[str, Any]],
        max_tokens: int,
        offline: Callable[[], str],
        cache_system: bool = True,
    ) -> Generator[str | LLMResult, None, None]:
        """Yield text deltas as they arrive, then exactly one final :class:`LLMResult`
        (whose ``text`` is the whole answer).

        Raises :class:`LLMUnavailable` when online and the API cannot answer, which can
        happen after some deltas were already yielded (a stream broken mid-way; the SDK
        retries only failures before the first byte). Closing the generator early closes
        the HTTP stream.
        """
        start = time.perf_counter()
        client = self._client
        if client is None:
            text = offline()
            yield from _offline_chunks(text)
            yield self._offline_result(lambda: text, start, "stream")
            return

        request = self._request_kwargs(system, messages, max_tokens, cache_system, start=start)
        try:
            with client.messages.stream(**request) as events:
                for delta in events.text_stream:
                    if delta:
                        yield delta
                final = events.get_final_message()
        except (anthropic.AnthropicError, httpx2.HTTPError) as exc:
            raise self._unavailable(exc, start, "stream") from exc
        yield self._online_result(final, start, "stream")

    # -- Message Batches (half price; for generations nobody is waiting on) ----------------

    def submit_batch(self, requests: list[tuple[str, dict[str, Any]]]) -> str:
        """Create a Message Batch of ``(custom_id, params)`` requests, each built with
        :meth:`build_request` (conformed to the model). Returns the batch id. Raises
        :class:`LLMUnavailable` (offline client: ``reason="offline"``)."""
        client = self._require_online("batch_submit")
        start = time.perf_counter()
        try:
            batch = client.messages.batches.create(
                requests=cast(
                    Any, [{"custom_id": cid, "params": params} for cid, params in requests]
                )
            )
        except (anthropic.AnthropicError, httpx2.HTTPError) as exc:
            raise self._unavailable(exc, start, "batch_submit") from exc
        return str(batch.id)

    def batch_ended(self, batch_id: str) -> bool:
        """Whether the batch has ended (its results can be read)."""
        client = self._require_online("batch_poll")
        start = time.perf_counter()
        try:
            batch = client.messages.batches.retrieve(batch_id)
        except (anthropic.AnthropicError, httpx2.HTTPError) as exc:
            raise self._unavailable(exc, start, "batch_poll") from exc
        return str(batch.processing_status) == "ended"

    def batch_results(
        self, batch_id: str
    ) -> Generator[tuple[str, LLMResult | LLMUnavailable], None, None]:
        """``(custom_id, result)`` per request of an ended batch: an :class:`LLMResult` for a
        succeeded one, an :class:`LLMUnavailable` (not raised) for an errored, canceled or
        expired one."""
        client = self._require_online("batch_results")
        start = time.perf_counter()
        try:
            for entry in client.messages.batches.results(batch_id):
                outcome = entry.result
                if outcome.type == "succeeded":
                    yield entry.custom_id, self._online_result(outcome.message, start, "batch")
                    continue
                error = getattr(outcome, "error", None)
                inner = getattr(error, "error", None)
                text = (
                    f"{getattr(inner, 'type', '')}: {getattr(inner, 'message', '')}"
                    if inner is not None
                    else outcome.type
                )
                reason = "invalid_request" if outcome.type == "errored" else "server_error"
                yield entry.custom_id, LLMUnavailable(reason, detail=outcome.type, error=text)
        except (anthropic.AnthropicError, httpx2.HTTPError) as exc:
            raise self._unavailable(exc, start, "batch_results") from exc

    def _require_online(self, op: str) -> anthropic.Anthropic:
        if self._client is None:
            raise LLMUnavailable("offline", detail=f"{op} needs ANTHROPIC_API_KEY")
        return self._client

    # -- helpers ----------------------------------------------------------------------------

    def _create(
        self, client: anthropic.Anthropic, request: dict[str, Any], start: float, op: str
    ) -> LLMResult:
        """One Messages API call, its failure as :class:`LLMUnavailable`."""
        try:
            message = client.messages.create(**request)
        except (anthropic.AnthropicError, httpx2.HTTPError) as exc:
            raise self._unavailable(exc, start, op) from exc
        return self._online_result(message, start, op)

    def _online_result(self, message: Any, start: float, mode: str) -> LLMResult:
        result = LLMResult(
            text=_message_text(message),
            generator=GENERATOR_ANTHROPIC,
            model=str(message.model or self.model),
            usage=_usage(message.usage),
            latency_ms=_elapsed_ms(start),
            stop_reason=str(message.stop_reason) if message.stop_reason else None,
        )
        self._log_result(result, mode)
        return result

    def build_request(
        self,
        system: str | list[dict[str, Any]],
        messages: list[dict[str, Any]],
        max_tokens: int,
        cache_system: bool = True,
        *,
        temperature: float | None = None,
    ) -> dict[str, Any]:
        """The Messages API keyword arguments for this client's model, conformed to what the
        model accepts (see :func:`shared.llm_models.conform_request`). Raises
        :class:`shared.llm_models.RequestNotSupported` for what cannot be conformed."""
        request: dict[str, Any] = {
            "model": self.model,
            "max_tokens": max_tokens,
            "messages": cast(Any, messages),
        }
        blocks = _system_blocks(system, cache_system)
        if blocks:
            request["system"] = blocks
        if temperature is not None:
            request["temperature"] = temperature
        conformed = conform_request(request)
        for name, change in conformed.adjustments:
            logger.debug(
                "llm.request_adjusted",
                extra={"llm_model": self.model, "llm_param": name, "llm_change": change},
            )
        out = conformed.request
        if "temperature" in out:
            # anthropic 2.x no longer types sampling parameters: they travel in the body.
            out["extra_body"] = {**out.get("extra_body", {}), "temperature": out.pop("temperature")}
        return out

    def _request_kwargs(
        self,
        system: str | list[dict[str, Any]],
        messages: list[dict[str, Any]],
        max_tokens: int,
        cache_system: bool,
        *,
        temperature: float | None = None,
        start: float,
    ) -> dict[str, Any]:
        try:
            return self.build_request(
                system, messages, max_tokens, cache_system, temperature=temperature
            )
        except RequestNotSupported as exc:
            logger.warning(
                "llm.request_refused_locally",
                extra={"llm_model": self.model, "llm_error": str(exc)},
            )
            raise LLMUnavailable(
                "unsupported_request", detail="refused before sending", error=str(exc)
            ) from exc

    @property
    def spec(self) -> ModelSpec:
        """The capabilities and prices of this client's model."""
        return spec_for(self.model)

    def _offline_result(self, offline: Callable[[], str], start: float, op: str) -> LLMResult:
        result = LLMResult(
            text=offline(),
            generator=GENERATOR_OFFLINE,
            model=OFFLINE_MODEL,
            usage=LLMUsage(),
            latency_ms=_elapsed_ms(start),
        )
        self._log_result(result, op)
        return result

    def _unavailable(self, exc: Exception, start: float, op: str) -> LLMUnavailable:
        reason, status = _classify(exc)
        logger.warning(
            "llm.unavailable",
            extra={
                "llm_op": op,
                "llm_model": self.model,
                "llm_reason": reason,
                "llm_status_code": status,
                "llm_error": type(exc).__name__,
                "llm_latency_ms": _elapsed_ms(start),
                "llm_max_retries": self.max_retries,
            },
        )
        return LLMUnavailable(
            reason, status_code=status, detail=type(exc).__name__, error=_api_error_text(exc)
        )

    @staticmethod
    def _log_result(result: LLMResult, op: str) -> None:
        logger.info(
            "llm.%s",
            op,
            extra={
                "llm_op": op,
                "llm_generator": result.generator,
                "llm_model": result.model,
                "llm_latency_ms": result.latency_ms,
                "llm_stop_reason": result.stop_reason,
                "llm_input_tokens": result.usage.input_tokens,
                "llm_output_tokens": result.usage.output_tokens,
                "llm_cache_creation_input_tokens": result.usage.cache_creation_input_tokens,
                "llm_cache_read_input_tokens": result.usage.cache_read_input_tokens,
                "llm_cache_creation_1h_input_tokens": (result.usage.cache_creation_1h_input_tokens),
            },
        )
