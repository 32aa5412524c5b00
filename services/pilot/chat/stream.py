"""Streamed chat turns: the LLM stream runs in a background thread that feeds a queue the HTTP
response reads, bounded per process. A client that disconnects stops reading, but the thread
still finishes and stores the turn."""

from __future__ import annotations

import contextvars
import logging
import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any

from services.pilot.chat.turns import (
    PreparedTurn,
    TurnResult,
    _offline,
    finish_turn,
    record_refusal,
)
from services.pilot.suggest_fix import (
    SuggestFixStreamFilter,
)
from shared.errors import DomainError
from shared.llm import (
    LLMClient,
    LLMResult,
    LLMUnavailable,
)

log = logging.getLogger(__name__)


# A comment line on an idle stream, so proxies do not drop a long wait for the LLM.
STREAM_HEARTBEAT_S = 15.0


StreamEvent = tuple[str, dict[str, Any] | None]

_background: set[threading.Thread] = set()
_background_lock = threading.Lock()

# A streamed turn's thread outlives its request on purpose (the turn is stored even if the
# client leaves), so each holds a slot of a per-process bound: without one, a client opening
# and dropping streams could start threads (each holding an LLM call) without limit.
DEFAULT_STREAM_SLOTS = 32
STREAM_RETRY_AFTER_S = 5


class StreamsBusy(DomainError):
    """429: every streamed-turn slot of this process is taken; nothing was stored."""

    status_code = 429

    def __init__(self) -> None:
        super().__init__("too many streamed chat turns in progress; try again shortly")
        self.retry_after = STREAM_RETRY_AFTER_S


class _StreamSlots:
    def __init__(self, size: int) -> None:
        self.configure(size)

    def configure(self, size: int) -> None:
        if size < 1:
            raise ValueError("CHAT_STREAM_CONCURRENCY must be at least 1")
        self.size = size
        self._semaphore = threading.BoundedSemaphore(size)

    def reserve(self) -> StreamSlot:
        semaphore = self._semaphore
        if not semaphore.acquire(blocking=False):
            raise StreamsBusy()
        return StreamSlot(semaphore)


class StreamSlot:
    """One reserved streaming slot; released exactly once."""

    def __init__(self, semaphore: threading.BoundedSemaphore) -> None:
        self._semaphore: threading.BoundedSemaphore | None = semaphore
        self._lock = threading.Lock()

    def release(self) -> None:
        with self._lock:
            semaphore, self._semaphore = self._semaphore, None
        if semaphore is not None:
            semaphore.release()


STREAM_SLOTS = _StreamSlots(DEFAULT_STREAM_SLOTS)


def configure_streams(size: int) -> None:
    STREAM_SLOTS.configure(size)


def reserve_stream() -> StreamSlot:
    """A slot for one streamed turn, or :class:`StreamsBusy` (before anything is stored)."""
    return STREAM_SLOTS.reserve()


def wait_for_background_turns(timeout_s: float) -> bool:
    """Wait until every streamed turn's background thread has finished (stored its turn or
    given up). Returns False if some were still running after `timeout_s`."""
    with _background_lock:
        threads = list(_background)
    for thread in threads:
        thread.join(timeout_s)
    return not any(thread.is_alive() for thread in threads)


def _run_stream(
    llm: LLMClient,
    prepared: PreparedTurn,
    out: queue.Queue[StreamEvent],
    on_done: Callable[[TurnResult], dict[str, Any]],
    on_unavailable: Callable[[PreparedTurn, LLMUnavailable], dict[str, Any]],
    slot: StreamSlot | None = None,
) -> None:
    terminal: StreamEvent | None = None
    try:
        result: LLMResult | None = None
        visible = SuggestFixStreamFilter()
        for item in llm.stream(
            system=prepared.request.system,
            messages=prepared.request.messages,
            max_tokens=prepared.request.max_tokens,
            offline=_offline(prepared),
        ):
            if isinstance(item, LLMResult):
                result = item
                continue
            text = visible.feed(item)
            if text:
                out.put(("delta", {"text": text}))
        rest = visible.finish()
        if rest:
            out.put(("delta", {"text": rest}))
        if result is None:  # pragma: no cover - LLMClient.stream always ends with a result
            raise LLMUnavailable("api_error", detail="stream ended without a result")
        terminal = ("done", on_done(finish_turn(prepared, result)))
    except LLMUnavailable as exc:
        record_refusal(prepared, exc, llm.model)
        terminal = ("error", on_unavailable(prepared, exc))
    except DomainError as exc:
        terminal = ("error", {"code": exc.status_code, "message": exc.message})
    except Exception:
        log.exception("pilot.chat_stream_failed", extra={"session_id": str(prepared.session_id)})
        terminal = (
            "error",
            {"code": 500, "message": "The assistant's answer could not be stored."},
        )
    finally:
        out.put(terminal or ("error", {"code": 500, "message": "The stream ended unexpectedly."}))
        with _background_lock:
            _background.discard(threading.current_thread())
        if slot is not None:
            slot.release()


def stream_turn(
    llm: LLMClient,
    prepared: PreparedTurn,
    *,
    on_done: Callable[[TurnResult], dict[str, Any]],
    on_unavailable: Callable[[PreparedTurn, LLMUnavailable], dict[str, Any]],
    heartbeat_s: float = STREAM_HEARTBEAT_S,
    slot: StreamSlot | None = None,
) -> Iterator[StreamEvent]:
    """Start the LLM stream in a background thread and return the events it produces:
    ("delta", {"text"}) for visible text (never any part of a `[SUGGEST_FIX]` block),
    ("ping", None) while nothing arrives, then one ("done", body) or ("error", body).

    The thread runs in a copy of the caller's context (request id for the outbox events)
    and finishes the turn whether or not anyone reads the events; it releases `slot` (from
    :func:`reserve_stream`) when it ends."""
    out: queue.Queue[StreamEvent] = queue.Queue()
    context = contextvars.copy_context()
    thread = threading.Thread(
        target=context.run,
        args=(_run_stream, llm, prepared, out, on_done, on_unavailable, slot),
        name=f"pilot-chat-{prepared.session_id}",
        # Not a daemon: a process shutting down waits for the turn to be stored.
        daemon=False,
    )
    with _background_lock:
        _background.add(thread)
    try:
        thread.start()
    except BaseException:
        with _background_lock:
            _background.discard(thread)
        if slot is not None:
            slot.release()
        raise

    def events() -> Iterator[StreamEvent]:
        while True:
            try:
                kind, data = out.get(timeout=heartbeat_s)
            except queue.Empty:
                yield ("ping", None)
                continue
            yield (kind, data)
            if kind in ("done", "error"):
                return

    return events()
