"""FlowPilot chat turns: the LLM request, the offline assistant, and persisting a turn.

No Flask. A turn is two transactions with the LLM call between them, so a slow or failed call
holds no database connection or lock and never loses what the engineer typed:

1. store the user's message and bump the session (`chat_message`); read, in the same
   transaction, everything the request needs;
2. once the assistant has answered: store its reply with any `[SUGGEST_FIX]` block stripped,
   persist the proposed fix (superseding the active one), record the usage ledger row, and
   bump again (`assistant_reply`, or `fix_suggested` when a fix came with it).

Request layout: the stable `ASSISTANT_SYSTEM_PROMPT` is the first system block, marked for
prompt caching; the per-turn session context (facts, active fix, script runs, templates) is a
second system block without cache_control, after the cache breakpoint. Keeping the context
out of the conversation means the history sent is exactly what was said, and the cached
prefix stays byte-identical across turns and sessions.

Streaming runs the LLM call in a background thread that feeds a queue; the HTTP response reads
the queue. A client that disconnects stops reading, but the thread still finishes and stores
the turn. `wait_for_background_turns()` lets tests and shutdown hooks wait for those threads.

The package: `request` (reading the session into the LLM request), `offline` (the answer given
without an LLM), `turns` (the two transactions and a whole turn) and `stream` (streamed turns
and their per-process bound); `messages` lists the stored conversation. This module is its
public face.
"""

from services.pilot.chat.messages import list_messages
from services.pilot.chat.request import LLMRequest, build_request
from services.pilot.chat.stream import (
    STREAM_RETRY_AFTER_S,
    StreamEvent,
    StreamsBusy,
    StreamSlot,
    configure_streams,
    reserve_stream,
    stream_turn,
    wait_for_background_turns,
)
from services.pilot.chat.turns import (
    PreparedTurn,
    TurnResult,
    TurnUnavailable,
    complete_turn,
    finish_turn,
    record_refusal,
    run_turn,
    start_turn,
)

__all__ = [
    "STREAM_RETRY_AFTER_S",
    "LLMRequest",
    "PreparedTurn",
    "StreamEvent",
    "StreamSlot",
    "StreamsBusy",
    "TurnResult",
    "TurnUnavailable",
    "build_request",
    "complete_turn",
    "configure_streams",
    "finish_turn",
    "list_messages",
    "record_refusal",
    "reserve_stream",
    "run_turn",
    "start_turn",
    "stream_turn",
    "wait_for_background_turns",
]
