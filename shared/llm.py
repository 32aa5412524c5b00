"""The one place that talks to the LLM (Claude, through the official ``anthropic`` SDK).

:class:`LLMClient` wraps a single ``anthropic.Anthropic`` client (thread-safe, built once)
configured from :class:`shared.config.Settings`: ``ANTHROPIC_API_KEY``, ``ANTHROPIC_BASE_URL``,
``ANTHROPIC_MODEL``, ``LLM_TIMEOUT_S`` and ``LLM_MAX_RETRIES``. Retries with backoff (timeouts,
connection errors, 408/409/429/5xx/529, honouring ``retry-after``) are the SDK's own; whatever
still fails afterwards surfaces as :class:`LLMUnavailable`.

Every request is passed through :func:`shared.llm_models.conform_request` before it is sent,
so nothing the target model refuses (sampling parameters on Sonnet 5.x, a prefill, a thinking
mode or effort level it does not have, ``max_tokens`` above its limit, more than four cache
breakpoints) ever leaves the process: what can be dropped is dropped (and logged), what cannot
is refused locally as a permanent :class:`LLMUnavailable`. A refusal by the API itself (400,
401, 402, 403, 404, 413) is permanent too: the SDK does not retry it, and ``error`` carries the
API's error type and message for the ledger.

The stable system prompt is sent as a text block marked ``cache_control: ephemeral`` so the
API caches it (prompt caching); the usage figures of every call, cache reads and writes
(split by TTL) included, come back on :class:`LLMResult` and are logged (never the prompt or
the answer).

Without an API key the client is *offline*: each call returns the caller's ``offline()``
text, so the product stays usable without the LLM.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import anthropic
import httpx2

from shared.llm_models import ModelSpec, RequestNotSupported, conform_request, spec_for

if TYPE_CHECKING:
    from shared.config import Settings

logger = logging.getLogger(__name__)

GENERATOR_ANTHROPIC = "anthropic"
GENERATOR_OFFLINE = "offline"
OFFLINE_MODEL = "offline"

# Reasons carried by LLMUnavailable. The first group is transient (the SDK already retried);
# the second means the request itself was refused and repeating it will not help.
TRANSIENT_REASONS = frozenset(
    {"timeout", "connection_error", "rate_limited", "overloaded", "server_error"}
)
PERMANENT_REASONS = frozenset(
    {
        "auth_error",
        "billing_error",
        "invalid_request",
        "unsupported_request",
        "api_error",
        "offline",
    }
)
# The API's error texts are stored in the ledger: bounded, never a prompt.
MAX_ERROR_CHARS = 300

# Rough per-message framing overhead used by fit_history, in tokens.
MESSAGE_OVERHEAD_TOKENS = 4

_CACHE_CONTROL: dict[str, str] = {"type": "ephemeral"}

# error.type of an SSE ``error`` event (which arrives inside a 200 response) -> (reason, status)
_STREAM_ERROR_TYPES: dict[str, tuple[str, int]] = {
    "overloaded_error": ("overloaded", 529),
    "rate_limit_error": ("rate_limited", 429),
    "timeout_error": ("timeout", 504),
    "api_error": ("server_error", 500),
}


@dataclass(frozen=True)
class LLMUsage:
    input_tokens: int = 0
    output_tokens: int = 0
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0
    # The 1-hour-TTL part of cache_creation_input_tokens (priced higher than 5-minute writes).
    cache_creation_1h_input_tokens: int = 0


@dataclass(frozen=True)
class LLMResult:
    text: str
    generator: str  # "anthropic" | "offline"
    model: str
    usage: LLMUsage
    latency_ms: int
    stop_reason: str | None = None


class LLMUnavailable(RuntimeError):
    """The LLM could not answer: the SDK gave up after its retries, or refused the request.

    ``reason`` is one of :data:`TRANSIENT_REASONS` (``timeout``, ``connection_error``,
    ``rate_limited``, ``overloaded``, ``server_error``: try again later) or
    :data:`PERMANENT_REASONS` (``auth_error`` for 401/403, ``invalid_request`` for other
    4xx, ``api_error`` for anything else the SDK raised: retrying will not help).
    ``status_code`` is the HTTP status when there was one; ``error`` is the API's own
    ``error.type: error.message`` (or the local refusal), bounded, for the ledger.
    """

    def __init__(
        self,
        reason: str,
        *,
        status_code: int | None = None,
        detail: str = "",
        error: str = "",
    ) -> None:
        message = f"LLM unavailable: {reason}"
        if status_code is not None:
            message += f" (HTTP {status_code})"
        if detail:
            message += f": {detail}"
        super().__init__(message)
        self.reason = reason
        self.status_code = status_code
        self.error = (error or detail or reason)[:MAX_ERROR_CHARS]

    @property
    def retryable(self) -> bool:
        """Whether trying again later may succeed."""
        return self.reason in TRANSIENT_REASONS


def estimate_tokens(text: str) -> int:
    """A rough token count: one token per four characters, rounded up (0 for "").

    Claude's tokenizer averages a little under four characters a token on English prose
    and fewer on code or non-Latin text, so treat this as an estimate for budgeting, not
    for billing.
    """
    return math.ceil(len(text) / 4) if text else 0


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            str(block.get("text", ""))
            for block in content
            if isinstance(block, dict) and block.get("type", "text") == "text"
        )
    return ""


def _message_tokens(message: dict[str, Any]) -> int:
    return estimate_tokens(_content_text(message.get("content"))) + MESSAGE_OVERHEAD_TOKENS


def _is_empty(content: Any) -> bool:
    if isinstance(content, str):
        return not content.strip()
    if isinstance(content, list):
        return not content
    return content is None


def _merge_content(first: Any, second: Any) -> Any:
    if isinstance(first, str) and isinstance(second, str):
        return f"{first}\n\n{second}"

    def as_blocks(content: Any) -> list[Any]:
        if isinstance(content, str):
            return [{"type": "text", "text": content}]
        return list(content)

    return as_blocks(first) + as_blocks(second)


def fit_history(messages: list[dict[str, Any]], budget_tokens: int) -> list[dict[str, Any]]:
    """The most recent conversation turns that fit ``budget_tokens`` (by :func:`estimate_tokens`
    plus a few tokens per message), shaped the way the Messages API wants them.

    * The newest user message (and anything after it) is always kept, even over budget.
    * Older messages are added newest-first while they fit; the first one that does not fit
      ends the walk, so the kept history is contiguous.
    * Messages with empty content or a role other than user/assistant are dropped.
    * The result starts with a user turn (leading assistant turns are dropped) and
      alternates roles (consecutive same-role turns are merged, their text joined by a blank
      line).

    The input list and its dicts are not modified.
    """
    cleaned = [
        dict(m)
        for m in messages
        if m.get("role") in ("user", "assistant") and not _is_empty(m.get("content"))
    ]
    newest_user = max((i for i, m in enumerate(cleaned) if m["role"] == "user"), default=None)
    if newest_user is None:
        return []

    kept = cleaned[newest_user:]
    used = sum(_message_tokens(m) for m in kept)
    for message in reversed(cleaned[:newest_user]):
        cost = _message_tokens(message)
        if used + cost > budget_tokens:
            break
        kept.insert(0, message)
        used += cost

    while kept and kept[0]["role"] != "user":
        kept.pop(0)

    shaped: list[dict[str, Any]] = []
    for message in kept:
        if shaped and shaped[-1]["role"] == message["role"]:
            shaped[-1] = {
                **shaped[-1],
                "content": _merge_content(shaped[-1]["content"], message["content"]),
            }
        else:
            shaped.append(message)
    return shaped


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


def _classify(exc: Exception) -> tuple[str, int | None]:
    """``(reason, status_code)`` for an exception raised by the SDK or its HTTP layer."""
    if isinstance(exc, anthropic.APITimeoutError | httpx2.TimeoutException):
        return "timeout", None
    if isinstance(exc, anthropic.APIConnectionError | httpx2.TransportError):
        return "connection_error", None
    if isinstance(exc, anthropic.APIStatusError):
        status = exc.status_code
        if status < 400:  # an SSE error event inside a 200 stream
            return _STREAM_ERROR_TYPES.get(str(exc.type or ""), ("server_error", 500))
        if status == 429:
            return "rate_limited", status
        if status == 529:
            return "overloaded", status
        if status in (408, 504):
            return "timeout", status
        if status >= 500 or status == 409:
            return "server_error", status
        if status in (401, 403):
            return "auth_error", status
        if status == 402:
            return "billing_error", status
        return "invalid_request", status
    return "api_error", None


def _api_error_text(exc: Exception) -> str:
    """``error.type: error.message`` from the API's error body, when it sent one."""
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        nested = body.get("error")
        error: dict[str, Any] = nested if isinstance(nested, dict) else body
        etype = str(error.get("type") or "")
        message = str(error.get("message") or "")
        if etype or message:
            return f"{etype}: {message}"[:MAX_ERROR_CHARS]
    return type(exc).__name__


def _get(raw: Any, name: str) -> Any:
    if isinstance(raw, dict):
        return raw.get(name)
    return getattr(raw, name, None)


def usage_from(raw: Any) -> LLMUsage:
    """:class:`LLMUsage` from a ``usage`` block (an SDK object or its JSON dict)."""
    if raw is None:
        return LLMUsage()
    split = _get(raw, "cache_creation")
    one_hour = int(_get(split, "ephemeral_1h_input_tokens") or 0) if split is not None else 0
    return LLMUsage(
        input_tokens=int(_get(raw, "input_tokens") or 0),
        output_tokens=int(_get(raw, "output_tokens") or 0),
        cache_creation_input_tokens=int(_get(raw, "cache_creation_input_tokens") or 0),
        cache_read_input_tokens=int(_get(raw, "cache_read_input_tokens") or 0),
        cache_creation_1h_input_tokens=one_hour,
    )


_usage = usage_from


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
        try:
            message = client.messages.create(**request)
        except (anthropic.AnthropicError, httpx2.HTTPError) as exc:
            raise self._unavailable(exc, start, "complete") from exc
        return self._online_result(message, start, "complete")

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
