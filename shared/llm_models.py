"""What each supported Claude model family accepts, and what it costs.

Every request the product sends goes through :func:`conform_request` (called by
:class:`shared.llm.LLMClient` for every call, streamed or not, batched or not), so no request a
target model refuses with a 400 is ever sent; :func:`cost_usd` prices a call's ``usage`` block
for the ledger.

Sources (read 2026-12-01) and the figures taken from them:

* Claude Sonnet 5.5 migration guide and model overview (platform.claude.com,
  ``/docs/*/models/sonnet-5-5/...``): sampling parameters set to a non-default value
  (``temperature``, ``top_p``, ``top_k``), assistant-message prefill, a forced ``tool_choice``
  (``any`` / ``tool``), a manual thinking budget (``thinking: {"type": "enabled",
  "budget_tokens": N}``) and ``thinking: {"type": "disabled"}`` answer HTTP 400; thinking is
  adaptive, steered by ``output_config.effort``. 1M-token context window, 128K max output.
  Prices: $2 input, $2.50 5-minute cache write, $4 1-hour cache write, $10 output per MTok,
  cache reads $0.20 per MTok, cut to $0.10 on 2026-10-07; the Batch API halves input and output.
* Claude Sonnet 5 overview: the same prices (cache reads $0.20), sampling parameters and manual
  thinking answer 400; prefill too (it already did on the 4.6 generation).
* Claude Sonnet 4.6 / Opus 4.6 ("What's new in Claude 4.6", the 4.6 migration guide): prefill
  answers 400; sampling parameters are accepted; thinking adaptive or manual (deprecated) or
  disabled. Sonnet 4.6: $3 / $3.75 / $6 / $0.30 / $15, 64K max output; Opus 4.6:
  $5 / $6.25 / $10 / $0.50 / $25, 128K max output. Haiku 4.5: $1 / $1.25 / $2 / $0.10 / $5,
  64K output, 200K context, prefill and sampling accepted.
* Prompt-caching minimums ("Prompt caching" page, cacheable prompt length): 2,048 tokens for
  Sonnet 4.6, 4,096 for Opus 4.6 and Haiku 4.5, 1,024 for Sonnet 4.5 and Sonnet 5.
  **Assumed**: 1,024 for Sonnet 5.5 (the documents we could read do not state it; Sonnet 5's
  figure is taken). At most 4 ``cache_control`` breakpoints per request; TTL ``5m`` (default)
  or ``1h``.
* **Assumed** where the pages we could read are silent: effort levels ``low``, ``medium``,
  ``high``, ``max`` on every adaptive-thinking model; the Sonnet 4.6 context window 1M.

The families' figures live in ``llm_models.toml`` beside this module, one table per family.

An unknown model id (not matching any family prefix) logs a warning once and gets
:data:`CONSERVATIVE`: nothing optional is sent (no sampling, no prefill, no thinking, no
effort, no forced tool), a 32K output cap, a 200K context, the largest caching minimum and the
highest known prices, so cost is over- rather than under-reported.
"""

from __future__ import annotations

import logging
import threading
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

MTOK = Decimal(1_000_000)
MAX_CACHE_BREAKPOINTS = 4
CACHE_TTLS = ("5m", "1h")
SAMPLING_PARAMS = ("temperature", "top_p", "top_k")


@dataclass(frozen=True)
class Prices:
    """USD per million tokens, in force from ``effective`` (inclusive) on."""

    effective: date
    input: Decimal
    cache_write_5m: Decimal
    cache_write_1h: Decimal
    cache_read: Decimal
    output: Decimal
    # Fraction taken off input and output tokens of a Message Batches request.
    batch_discount: Decimal = Decimal("0.5")


@dataclass(frozen=True)
class ModelSpec:
    family: str
    prefixes: tuple[str, ...]
    sampling_params: bool
    prefill: bool
    forced_tool_choice: bool
    # Accepted values of thinking.type: "adaptive", "enabled" (manual budget), "disabled".
    thinking_modes: frozenset[str]
    effort_levels: tuple[str, ...]
    max_output_tokens: int
    context_window: int
    min_cacheable_tokens: int
    prices: tuple[Prices, ...]  # oldest first
    known: bool = True
    notes: str = ""

    def price_on(self, day: date) -> Prices:
        """The prices in force on ``day`` (the oldest entry for days before every entry)."""
        current = self.prices[0]
        for entry in self.prices:
            if entry.effective <= day:
                current = entry
        return current


#: The families and their prices, one table each: edited there, not here.
FAMILIES_FILE = Path(__file__).with_name("llm_models.toml")


def _prices(entry: Mapping[str, Any]) -> Prices:
    return Prices(
        effective=entry["effective"],
        input=Decimal(entry["input"]),
        cache_write_5m=Decimal(entry["cache_write_5m"]),
        cache_write_1h=Decimal(entry["cache_write_1h"]),
        cache_read=Decimal(entry["cache_read"]),
        output=Decimal(entry["output"]),
    )


def _family(table: Mapping[str, Any]) -> ModelSpec:
    return ModelSpec(
        **{
            **table,
            "prefixes": tuple(table["prefixes"]),
            "thinking_modes": frozenset(table["thinking_modes"]),
            "effort_levels": tuple(table["effort_levels"]),
            "prices": tuple(_prices(entry) for entry in table["prices"]),
        }
    )


def load_families(path: Path = FAMILIES_FILE) -> tuple[ModelSpec, ...]:
    """The model families of the TOML file at ``path``, in file order."""
    with path.open("rb") as handle:
        return tuple(_family(table) for table in tomllib.load(handle)["family"])


FAMILIES: tuple[ModelSpec, ...] = load_families()

CONSERVATIVE = ModelSpec(
    family="unknown",
    prefixes=(),
    sampling_params=False,
    prefill=False,
    forced_tool_choice=False,
    thinking_modes=frozenset(),
    effort_levels=(),
    max_output_tokens=32_000,
    context_window=200_000,
    min_cacheable_tokens=max(f.min_cacheable_tokens for f in FAMILIES),
    prices=(
        Prices(
            effective=date(2000, 1, 1),
            input=max(f.prices[-1].input for f in FAMILIES),
            cache_write_5m=max(f.prices[-1].cache_write_5m for f in FAMILIES),
            cache_write_1h=max(f.prices[-1].cache_write_1h for f in FAMILIES),
            cache_read=max(f.prices[-1].cache_read for f in FAMILIES),
            output=max(f.prices[-1].output for f in FAMILIES),
            batch_discount=Decimal("0"),
        ),
    ),
    known=False,
    notes="unknown model: the most conservative rules and the highest known prices",
)

_warned: set[str] = set()
_warned_lock = threading.Lock()


def spec_for(model: str) -> ModelSpec:
    """The family of ``model`` (an alias such as ``claude-sonnet-5-5`` or a dated id such as
    ``claude-sonnet-5-5-20261001``; the longest matching prefix wins), or
    :data:`CONSERVATIVE` with a warning logged once per id."""
    best: ModelSpec | None = None
    best_len = -1
    for spec in FAMILIES:
        for prefix in spec.prefixes:
            matches = model == prefix or model.startswith(prefix + "-")
            if matches and len(prefix) > best_len:
                best, best_len = spec, len(prefix)
    if best is not None:
        return best
    with _warned_lock:
        first = model not in _warned
        _warned.add(model)
    if first:
        logger.warning(
            "llm.unknown_model",
            extra={"llm_model": model, "llm_rules": "conservative"},
        )
    return CONSERVATIVE


# ── Requests ────────────────────────────────────────────────────────────────────────────────


class RequestNotSupported(ValueError):
    """The request asks for something the target model refuses and that cannot be dropped
    without changing its meaning (an assistant prefill, too many cache breakpoints)."""


@dataclass
class Conformed:
    request: dict[str, Any]
    # What was removed or changed, for the log: ("temperature", "dropped: ...") pairs.
    adjustments: list[tuple[str, str]] = field(default_factory=list)


def _cache_breakpoints(request: Mapping[str, Any]) -> int:
    count = 0

    def blocks(content: Any) -> list[Any]:
        return content if isinstance(content, list) else []

    for block in blocks(request.get("system")):
        if isinstance(block, dict) and block.get("cache_control"):
            count += 1
    for tool in request.get("tools") or []:
        if isinstance(tool, dict) and tool.get("cache_control"):
            count += 1
    for message in request.get("messages") or []:
        if isinstance(message, dict):
            for block in blocks(message.get("content")):
                if isinstance(block, dict) and block.get("cache_control"):
                    count += 1
    return count


def conform_request(request: Mapping[str, Any]) -> Conformed:
    """``request`` (Messages API keyword arguments, ``model`` included) made acceptable to its
    model: sampling parameters dropped where refused, ``max_tokens`` capped at the model's
    output limit, a refused thinking setting or forced ``tool_choice`` removed, an unknown
    effort level removed. Raises :class:`RequestNotSupported` for an assistant prefill on a
    model that refuses it and for more than four ``cache_control`` breakpoints.

    ``extra_body`` is inspected too: a sampling parameter smuggled there is treated like a
    typed one.
    """
    model = str(request.get("model") or "")
    spec = spec_for(model)
    out = dict(request)
    changes: list[tuple[str, str]] = []

    extra = dict(out.get("extra_body") or {})
    for name in SAMPLING_PARAMS:
        for where, holder in (("", out), ("extra_body.", extra)):
            if name in holder and not spec.sampling_params:
                holder.pop(name)
                changes.append((where + name, f"dropped: {spec.family} refuses sampling params"))
    if "extra_body" in out or extra:
        if extra:
            out["extra_body"] = extra
        else:
            out.pop("extra_body", None)

    max_tokens = out.get("max_tokens")
    if isinstance(max_tokens, int) and max_tokens > spec.max_output_tokens:
        out["max_tokens"] = spec.max_output_tokens
        changes.append(("max_tokens", f"capped at {spec.max_output_tokens}"))

    thinking = out.get("thinking")
    if isinstance(thinking, Mapping):
        mode = str(thinking.get("type") or "")
        if mode not in spec.thinking_modes:
            out.pop("thinking")
            changes.append(("thinking", f"dropped: {spec.family} refuses thinking {mode!r}"))

    output_config = out.get("output_config")
    if isinstance(output_config, Mapping) and "effort" in output_config:
        if output_config.get("effort") not in spec.effort_levels:
            trimmed = {k: v for k, v in output_config.items() if k != "effort"}
            if trimmed:
                out["output_config"] = trimmed
            else:
                out.pop("output_config")
            changes.append(("output_config.effort", f"dropped: not a {spec.family} level"))

    tool_choice = out.get("tool_choice")
    if isinstance(tool_choice, Mapping) and tool_choice.get("type") in ("any", "tool"):
        if not spec.forced_tool_choice:
            out["tool_choice"] = {"type": "auto"}
            changes.append(("tool_choice", f"auto: {spec.family} refuses forced tool use"))

    messages = out.get("messages") or []
    if messages and isinstance(messages[-1], Mapping):
        if messages[-1].get("role") == "assistant" and not spec.prefill:
            raise RequestNotSupported(
                f"{spec.family} refuses an assistant prefill (the last message must be the "
                "user's); use the system prompt or a structured output instead"
            )

    breakpoints = _cache_breakpoints(out)
    if breakpoints > MAX_CACHE_BREAKPOINTS:
        raise RequestNotSupported(
            f"{breakpoints} cache_control breakpoints; the API allows {MAX_CACHE_BREAKPOINTS}"
        )
    return Conformed(out, changes)


# ── Costs ───────────────────────────────────────────────────────────────────────────────────


@dataclass(frozen=True)
class CostInput:
    """The billable figures of one call, as the API's ``usage`` block reports them."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_creation_input_tokens: int = 0  # 5-minute and 1-hour writes together
    cache_creation_1h_input_tokens: int = 0  # the 1-hour part of the above
    cache_read_input_tokens: int = 0


def cost_usd(model: str, usage: CostInput, *, on: date, batch: bool = False) -> Decimal:
    """What a call cost, in USD (exact, not rounded): input, cache writes by TTL, cache reads
    and output at the prices in force ``on`` that day; with ``batch`` the Batch API discount
    applies to input and output tokens (cache figures are charged as usual)."""
    prices = spec_for(model).price_on(on)
    write_1h = min(usage.cache_creation_1h_input_tokens, usage.cache_creation_input_tokens)
    write_5m = usage.cache_creation_input_tokens - write_1h
    io_factor = (Decimal(1) - prices.batch_discount) if batch else Decimal(1)
    total = (
        Decimal(usage.input_tokens) * prices.input * io_factor
        + Decimal(usage.output_tokens) * prices.output * io_factor
        + Decimal(write_5m) * prices.cache_write_5m
        + Decimal(write_1h) * prices.cache_write_1h
        + Decimal(usage.cache_read_input_tokens) * prices.cache_read
    )
    return total / MTOK
