"""One page of a list and the list's total, read in one statement."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from api.deps import Pagination


def fetch_page(
    session: Session, query: sa.Select[*tuple[Any, ...]], page: Pagination
) -> tuple[list[tuple[Any, ...]], int]:
    """The rows of ``page`` of the ordered ``query`` and the number of rows the query has.

    The total rides on every row as ``count(*) over ()``: one round trip instead of a count and a
    page (the light endpoints' cost is mostly round trips, bench/api_bench.py). A page past the
    end has no row to carry it, so only then is the total counted on its own.
    """
    counted = query.add_columns(sa.func.count().over().label("total_rows"))
    rows = list(session.execute(counted.offset(page.offset).limit(page.per_page)))
    if rows:
        return [tuple(row)[:-1] for row in rows], int(rows[0][-1])
    if page.offset == 0:
        return [], 0
    total = session.scalar(sa.select(sa.func.count()).select_from(query.order_by(None).subquery()))
    return [], int(total or 0)
