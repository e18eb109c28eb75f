"""``/api/v1/alleles/{id}``: one allele with its current annotation and annotation history."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from api.allele_data import allele_fields, annotation_history, current_annotations
from api.deps import SessionDep
from api.models import AlleleDetailOut, ErrorOut
from engine.db.models import Allele
from engine.errors import NotFoundError

router = APIRouter(prefix="/api/v1/alleles", tags=["alleles"])


@router.get("/{allele_id}", response_model=AlleleDetailOut, responses={404: {"model": ErrorOut}})
def read_allele(session: SessionDep, allele_id: int) -> dict[str, Any]:
    allele = session.get(Allele, allele_id)
    if allele is None:
        raise NotFoundError("allele", allele_id)
    return {
        **allele_fields(allele),
        "annotation": current_annotations(session, [allele.id]).get(allele.id),
        "annotation_history": annotation_history(session, allele.id),
    }
