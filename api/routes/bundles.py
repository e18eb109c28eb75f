"""``/api/v1/bundles``: the annotation data bundles, the active one marked."""

from __future__ import annotations

import datetime as dt

from fastapi import APIRouter

from api.deps import SessionDep
from api.models import ApiModel
from engine.bundles import list_bundles

router = APIRouter(prefix="/api/v1/bundles", tags=["bundles"])


class DatasetOut(ApiModel):
    name: str
    version: str


class BundleOut(ApiModel):
    version: str
    active: bool
    date_added: dt.datetime
    date_activated: dt.datetime | None  # last time it was made active
    config_sha256: str
    datasets: list[DatasetOut]


class BundleList(ApiModel):
    items: list[BundleOut]  # oldest first
    active_version: str | None  # None: analyses are normalised but not annotated


@router.get("", response_model=BundleList, summary="Annotation bundles, the active one marked")
def get_bundles(session: SessionDep) -> BundleList:
    bundles = list_bundles(session)
    items = [
        BundleOut(
            version=b.version,
            active=b.active,
            date_added=b.date_added,
            date_activated=b.date_activated,
            config_sha256=b.config_sha256,
            datasets=[DatasetOut(name=name, version=version) for name, version in b.datasets.items()],
        )
        for b in bundles
    ]
    active = next((b.version for b in bundles if b.active), None)
    return BundleList(items=items, active_version=active)
