"""Explicit transactions, including the repeatable-read snapshot the notes bundle relies on."""

from __future__ import annotations

import threading
from typing import Any

from sqlalchemy import text

from shared.db import db


def test_repeatable_read_transaction_sees_one_snapshot(migrated: Any) -> None:
    with db.transaction() as session:
        session.execute(text("INSERT INTO accounts (id, name) VALUES (gen_random_uuid(), 'a')"))
    with db.transaction(isolation_level="REPEATABLE READ") as session:
        level = session.execute(text("SHOW transaction_isolation")).scalar_one()
        assert level == "repeatable read"
        before = session.execute(text("SELECT count(*) FROM accounts")).scalar_one()

        def concurrent_write() -> None:
            with db.transaction() as other:
                other.execute(
                    text("INSERT INTO accounts (id, name) VALUES (gen_random_uuid(), 'b')")
                )

        writer = threading.Thread(target=concurrent_write)
        writer.start()
        writer.join()
        after = session.execute(text("SELECT count(*) FROM accounts")).scalar_one()
        assert after == before, "the snapshot does not move inside the transaction"
    with db.session() as session:
        assert session.execute(text("SELECT count(*) FROM accounts")).scalar_one() == before + 1


def test_transaction_rolls_back_on_error(migrated: Any) -> None:
    try:
        with db.transaction() as session:
            session.execute(text("INSERT INTO accounts (id, name) VALUES (gen_random_uuid(), 'x')"))
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    with db.session() as session:
        assert session.execute(text("SELECT count(*) FROM accounts")).scalar_one() == 0
