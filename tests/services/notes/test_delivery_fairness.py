"""One tenant's slow endpoint cannot hold the delivery workers, or one worker for ever.

The attacks: a receiver that sends one byte every 2 s held a delivery past 100 s (the timeout
bounded each read, not the request), and the lease heartbeat kept the sweeper away; and one
account's slow endpoint could occupy every worker slot while other accounts' notes waited."""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select

from services.notes import deliveries, delivery
from services.notes.context import context_for
from services.notes.integrations import configure_ticketing
from shared.db import db
from shared.models import ResolutionNote, WebhookAttempt
from tests.support.receiver import WebhookReceiver
from tests.support.servers import settings_with
from tests.support.workers import create_session


def _note(account_id: uuid.UUID) -> uuid.UUID:
    sid = create_session(account_id)
    with db.transaction() as session:
        note = ResolutionNote(
            session_id=sid,
            account_id=account_id,
            kind="resolution_note",
            state_version=1,
            markdown="## Problem\nPrinter offline.",
            delivery_status="pending",
        )
        session.add(note)
        session.flush()
        return note.id


def _ticketing(account_id: uuid.UUID, url: str) -> str:
    with db.transaction() as session:
        return configure_ticketing(
            session, account_id=account_id, url=url, secret=None, allow_private=True
        ).secret


@pytest.fixture
def drip_server() -> Iterator[str]:
    """Answers 200 and then one body byte every 0.3 s, for ever."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            threading.Thread(target=drip, args=(conn,), daemon=True).start()

    def drip(conn: socket.socket) -> None:
        with conn:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")
            try:
                while not stop.wait(0.3):
                    conn.sendall(b".")
            except OSError:
                pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}/hook"
    stop.set()
    thread.join(5)
    listener.close()


def test_slow_drip_receiver_cannot_hold_a_delivery_past_its_deadline(drip_server: str) -> None:
    started = time.monotonic()
    result = delivery.deliver(
        drip_server,
        delivery.generate_secret(),
        {"type": "x"},
        msg_id="m",
        timeout_s=1.0,
        allow_private=True,
    )
    elapsed = time.monotonic() - started
    assert result.outcome is delivery.Outcome.RETRY and result.status_code is None
    assert result.error is not None and "deadline" in result.error
    assert elapsed < 30, elapsed  # bounded by the 1 s total, not 0.3 s per byte for ever


def test_one_tenant_cannot_starve_the_others(migrated: Any, make_user: Any) -> None:
    ctx = context_for(
        settings_with(
            migrated,
            WEBHOOK_ACCOUNT_CONCURRENCY=1,
            WEBHOOK_ACCOUNT_BUSY_DELAY_S=2.0,
            WEBHOOK_TIMEOUT_S=20.0,
        )
    )
    slow_account = make_user("owner").account_id
    other_account = make_user("owner").account_id
    with WebhookReceiver(statuses=["hang"], hang_max_s=30) as slow, WebhookReceiver() as fast:
        _ticketing(slow_account, slow.url)
        _ticketing(other_account, fast.url)
        first, second = _note(slow_account), _note(slow_account)
        other = _note(other_account)

        outcome: dict[str, Any] = {}
        holder = threading.Thread(
            target=lambda: outcome.update(
                step=deliveries.deliver_note(ctx, first, owner="w1:first")
            )
        )
        holder.start()
        try:
            slow.wait_for(1)  # the first delivery is in flight, held by the slow endpoint
            busy = deliveries.deliver_note(ctx, second, owner="w2:second")
            assert (busy.status, busy.countdown) == ("account_busy", 2.0)
            assert len(slow.deliveries) == 1  # nothing was sent for the second note

            # Another account's note goes out at once.
            assert deliveries.deliver_note(ctx, other, owner="w3:other").status == "delivered"
            assert len(fast.deliveries) == 1
        finally:
            slow.release_hangs()
            holder.join(30)
        assert outcome["step"].status == "delivered"

    with db.session() as session:
        postponed = session.get(ResolutionNote, second)
        assert postponed is not None
        assert postponed.delivery_status == "pending" and postponed.attempts == 0
        assert postponed.next_attempt_at is not None
        attempts = session.scalars(
            select(WebhookAttempt.note_id).where(WebhookAttempt.note_id == second)
        ).all()
        assert attempts == []  # postponing is not an attempt
