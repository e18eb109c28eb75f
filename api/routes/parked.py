"""``/api/v1/parked``: events parked because even recording their failure failed (engine.parked)."""

from __future__ import annotations

import datetime as dt

from fastapi import APIRouter
from pydantic import BaseModel

from api.deps import SessionDep
from engine.parked import list_parked

router = APIRouter(prefix="/api/v1/parked", tags=["operations"])


class ParkedOut(BaseModel):
    id: int
    stage: str
    topic: str
    key: str | None
    analysis: str | None
    event_id: str | None
    reason: str
    date_parked: dt.datetime
    size: int


@router.get("", response_model=list[ParkedOut])
def parked_events(session: SessionDep) -> list[ParkedOut]:
    """Every parked event, oldest first; retry or drop them with ``annostream parked``."""
    return [
        ParkedOut(
            id=p.id,
            stage=p.stage,
            topic=p.topic,
            key=p.key,
            analysis=p.analysis,
            event_id=p.event_id,
            reason=p.reason,
            date_parked=p.date_parked,
            size=len(p.value),
        )
        for p in list_parked(session)
    ]
