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

The package: `results` (usage, result, failure), `history` (token estimates, fitting history)
and `client` (:class:`LLMClient`); this module is its public face.
"""

from shared.llm.client import LLMClient
from shared.llm.history import MESSAGE_OVERHEAD_TOKENS, estimate_tokens, fit_history
from shared.llm.results import (
    GENERATOR_ANTHROPIC,
    GENERATOR_OFFLINE,
    MAX_ERROR_CHARS,
    OFFLINE_MODEL,
    PERMANENT_REASONS,
    TRANSIENT_REASONS,
    LLMResult,
    LLMUnavailable,
    LLMUsage,
    usage_from,
)

__all__ = [
    "GENERATOR_ANTHROPIC",
    "GENERATOR_OFFLINE",
    "LLMClient",
    "LLMResult",
    "LLMUnavailable",
    "LLMUsage",
    "MAX_ERROR_CHARS",
    "MESSAGE_OVERHEAD_TOKENS",
    "OFFLINE_MODEL",
    "PERMANENT_REASONS",
    "TRANSIENT_REASONS",
    "estimate_tokens",
    "fit_history",
    "usage_from",
]
