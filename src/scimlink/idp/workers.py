"""The registry of running provisioning engines, so that limits hold across processes.

Each engine that runs until stopped writes a heartbeat every few seconds. An application's
concurrency and rate limits are divided between the engines seen recently: with N workers each
takes 1/N of the rate and of the concurrency (at least one call at a time each).
"""

from __future__ import annotations

import os
import socket
from datetime import datetime
from datetime import timedelta

from sqlalchemy import delete
from sqlalchemy import func
from sqlalchemy import select
from sqlalchemy.orm import Session

from scimlink.idp.models import Worker
from scimlink.storage.upsert import upsert

#: How often an engine reports, and how long after its last report it still counts.
HEARTBEAT = timedelta(seconds=5)
ALIVE_FOR = timedelta(seconds=20)


def heartbeat(session: Session, worker_id: str, now: datetime) -> int:
    """Record that ``worker_id`` is alive; returns how many engines are alive now."""
    upsert(
        session,
        Worker,
        [
            {
                "id": worker_id,
                "host": socket.gethostname()[:255],
                "pid": os.getpid(),
                "started": now,
                "seen_at": now,
            }
        ],
        keys=["id"],
        set_=lambda excluded: {"seen_at": excluded.seen_at},
    )
    # Long-dead rows (a worker killed with -9) are cleared by whoever is alive.
    session.execute(delete(Worker).where(Worker.seen_at < now - 10 * ALIVE_FOR))
    return alive(session, now)


def alive(session: Session, now: datetime) -> int:
    return int(
        session.execute(
            select(func.count()).select_from(Worker).where(Worker.seen_at >= now - ALIVE_FOR)
        ).scalar_one()
    )


def forget(session: Session, worker_id: str) -> None:
    """A worker that stops cleanly leaves its share to the others at once."""
    session.execute(delete(Worker).where(Worker.id == worker_id))


def listing(session: Session, now: datetime) -> list[dict[str, object]]:
    rows = session.execute(select(Worker).order_by(Worker.started)).scalars()
    return [
        {
            "id": row.id,
            "host": row.host,
            "pid": row.pid,
            "started": row.started.isoformat(),
            "seen_at": row.seen_at.isoformat(),
            "alive": row.seen_at >= now - ALIVE_FOR,
        }
        for row in rows
    ]
