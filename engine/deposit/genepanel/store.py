"""Storing a parsed gene panel in ELLA's gene panel tables (``genepanel``, ``gene``,
``transcript``, ``phenotype`` and the two link tables), within the caller's transaction."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, cast

import sqlalchemy as sa
from sqlalchemy.orm import Session

from engine.db.bulk import bulk_loader
from engine.db.models import Gene, Genepanel, Phenotype, Transcript, genepanel_phenotype, genepanel_transcript
from engine.deposit.genepanel.read import GenepanelData
from engine.errors import MissingGenepanelError

# The mapped classes' tables, typed as tables for Core statements (executemany, ON CONFLICT).
GENE_TABLE = cast(sa.Table, Gene.__table__)
TRANSCRIPT_TABLE = cast(sa.Table, Transcript.__table__)
PHENOTYPE_TABLE = cast(sa.Table, Phenotype.__table__)
GENEPANEL_TABLE = cast(sa.Table, Genepanel.__table__)
# Rows per executemany batch and ids per IN (...) list: well below SQLite's variable limit.
BATCH_SIZE = 5000

Outcome = Literal["created", "replaced", "already_present"]


@dataclass(slots=True)
class DepositResult:
    name: str
    version: str
    outcome: Outcome
    genes: int = 0
    transcripts: int = 0
    phenotypes: int = 0
    genes_created: int = 0
    genes_renamed: int = 0
    transcripts_created: int = 0
    transcripts_updated: int = 0
    phenotypes_created: int = 0
    # Only for ``already_present``: whether the folder's content differs from the stored panel.
    differs_from_stored: bool | None = None
    warnings: list[str] = field(default_factory=list)

    def summary(self) -> str:
        panel = f"gene panel {self.name}_{self.version}"
        if self.outcome == "already_present":
            tail = (
                "; the folder differs from it: use --replace to replace the stored panel"
                if self.differs_from_stored
                else " with the same content; nothing changed"
            )
            return f"{panel} is already in the database{tail}"
        return (
            f"{self.outcome} {panel}: {self.genes} genes ({self.genes_created} new, "
            f"{self.genes_renamed} renamed), {self.transcripts} transcripts "
            f"({self.transcripts_created} new, {self.transcripts_updated} updated), "
            f"{self.phenotypes} phenotypes ({self.phenotypes_created} new)"
        )


def genepanel_exists(session: Session, name: str, version: str) -> bool:
    found = session.execute(
        sa.select(Genepanel.name).where(Genepanel.name == name, Genepanel.version == version)
    ).first()
    return found is not None


def missing_genepanel_message(name: str, version: str) -> str:
    return (
        f"gene panel {name}_{version} is not in the database: "
        "deposit it with `annostream deposit genepanel --folder DIR`"
    )


def require_genepanel(session: Session, name: str, version: str, *, file: str | None = None) -> None:
    """Raise ``MissingGenepanelError`` (with the deposit command to run) unless the panel is stored."""
    if not genepanel_exists(session, name, version):
        raise MissingGenepanelError(missing_genepanel_message(name, version), file=file)


def deposit_genepanel(session: Session, data: GenepanelData, *, replace: bool = False) -> DepositResult:
    """Store a parsed panel within the caller's transaction (the caller commits).

    A panel that is already stored is left alone unless ``replace``: then its links to transcripts
    and phenotypes are replaced, and shared transcripts/phenotypes are updated to the folder's
    values. Inserts are keyed (ON CONFLICT DO NOTHING), so a concurrent or repeated deposit
    cannot create a row twice.
    """
    created = _insert_ignoring_conflicts(
        session,
        GENEPANEL_TABLE,
        [
            {
                "name": data.name,
                "version": data.version,
                "genome_reference": data.genome_reference,
                "official": True,
            }
        ],
        ["name", "version"],
    )
    if not created and not replace:
        return DepositResult(
            name=data.name,
            version=data.version,
            outcome="already_present",
            differs_from_stored=_differs_from_stored(session, data),
            warnings=list(data.warnings),
        )
    result = DepositResult(
        name=data.name,
        version=data.version,
        outcome="created" if created else "replaced",
        genes=len(data.genes),
        transcripts=len(data.transcripts),
        phenotypes=len(data.phenotypes),
        warnings=list(data.warnings),
    )
    if not created:
        _unlink_panel(session, data)
    _store_genes(session, data, result)
    transcript_ids = _store_transcripts(session, data, result, update_existing=replace)
    phenotype_ids = _store_phenotypes(session, data, result, update_existing=replace)
    _link_panel(session, data, transcript_ids, phenotype_ids)
    session.flush()
    return result


def _store_genes(session: Session, data: GenepanelData, result: DepositResult) -> None:
    genes = data.genes
    table = GENE_TABLE
    stored = _select_in(
        session, sa.select(table.c.hgnc_id, table.c.hgnc_symbol), table.c.hgnc_id, list(genes)
    )
    stored_symbols = {hgnc_id: symbol for hgnc_id, symbol in stored}
    # HGNC renames genes; the newest panel carries the current symbol.
    renamed = [
        {"b_id": gid, "hgnc_symbol": genes[gid]}
        for gid, symbol in stored_symbols.items()
        if symbol != genes[gid]
    ]
    if renamed:
        _execute_many(session, table.update().where(table.c.hgnc_id == sa.bindparam("b_id")), renamed)
        result.warnings += [
            f"gene HGNC:{row['b_id']} renamed from {stored_symbols[row['b_id']]} to {row['hgnc_symbol']}"
            for row in renamed
        ]
    new = [
        {"hgnc_id": gid, "hgnc_symbol": symbol} for gid, symbol in genes.items() if gid not in stored_symbols
    ]
    result.genes_created = _insert_ignoring_conflicts(session, table, new, ["hgnc_id"])
    result.genes_renamed = len(renamed)


def _store_transcripts(
    session: Session,
    data: GenepanelData,
    result: DepositResult,
    *,
    update_existing: bool,
) -> dict[str, int]:
    table = TRANSCRIPT_TABLE
    wanted = {row.transcript_name: row.transcript_values(data.genome_reference) for row in data.transcripts}
    columns = [table.c[name] for name in next(iter(wanted.values()))]
    stored = {
        row.transcript_name: row
        for row in _select_in(session, sa.select(table.c.id, *columns), table.c.transcript_name, list(wanted))
    }
    changed = {
        name: values for name, values in wanted.items() if name in stored and _differs(stored[name], values)
    }
    if changed and update_existing:
        _execute_many(
            session,
            table.update().where(table.c.id == sa.bindparam("b_id")),
            [{**values, "b_id": stored[name].id} for name, values in changed.items()],
        )
        result.transcripts_updated = len(changed)
    elif changed:
        result.warnings.append(
            f"{len(changed)} transcript(s) are stored with other values and were kept as stored "
            f"(e.g. {next(iter(changed))}); deposit with --replace to update them"
        )
    new = [values for name, values in wanted.items() if name not in stored]
    result.transcripts_created = _insert_ignoring_conflicts(session, table, new, ["transcript_name"])
    ids = _select_in(
        session, sa.select(table.c.transcript_name, table.c.id), table.c.transcript_name, list(wanted)
    )
    return {name: transcript_id for name, transcript_id in ids}


def _store_phenotypes(
    session: Session,
    data: GenepanelData,
    result: DepositResult,
    *,
    update_existing: bool,
) -> dict[tuple[int, str, str], int]:
    table = PHENOTYPE_TABLE

    def stored_by_identity() -> dict[tuple[int, str, str], Any]:
        query = sa.select(
            table.c.id, table.c.gene_id, table.c.description, table.c.inheritance, table.c.omim_id
        )
        rows = _select_in(session, query, table.c.gene_id, sorted({p.gene_id for p in data.phenotypes}))
        return {(row.gene_id, row.description, row.inheritance): row for row in rows}

    stored = stored_by_identity()
    if update_existing:
        changed = [
            {"b_id": stored[p.identity()].id, "omim_id": p.omim_id}
            for p in data.phenotypes
            if p.identity() in stored and stored[p.identity()].omim_id != p.omim_id
        ]
        _execute_many(session, table.update().where(table.c.id == sa.bindparam("b_id")), changed)
    new = [
        {
            "gene_id": p.gene_id,
            "description": p.description,
            "inheritance": p.inheritance,
            "omim_id": p.omim_id,
        }
        for p in data.phenotypes
        if p.identity() not in stored
    ]
    result.phenotypes_created = _insert_ignoring_conflicts(
        session, table, new, ["gene_id", "description", "inheritance"]
    )
    return {identity: row.id for identity, row in stored_by_identity().items()}


def _unlink_panel(session: Session, data: GenepanelData) -> None:
    session.execute(
        sa.update(GENEPANEL_TABLE)
        .where(Genepanel.name == data.name, Genepanel.version == data.version)
        .values(genome_reference=data.genome_reference)
    )
    for table in (genepanel_transcript, genepanel_phenotype):
        session.execute(
            table.delete().where(
                table.c.genepanel_name == data.name, table.c.genepanel_version == data.version
            )
        )


def _link_panel(
    session: Session,
    data: GenepanelData,
    transcript_ids: dict[str, int],
    phenotype_ids: dict[tuple[int, str, str], int],
) -> None:
    panel = {"genepanel_name": data.name, "genepanel_version": data.version}
    _execute_many(
        session,
        genepanel_transcript.insert(),
        [
            {**panel, "transcript_id": transcript_ids[row.transcript_name], "inheritance": row.inheritance}
            for row in data.transcripts
        ],
    )
    _execute_many(
        session,
        genepanel_phenotype.insert(),
        [{**panel, "phenotype_id": phenotype_ids[row.identity()]} for row in data.phenotypes],
    )


def _differs_from_stored(session: Session, data: GenepanelData) -> bool:
    """Compare the folder with the stored panel's links (transcripts+inheritance, phenotypes)."""
    tx, gt = TRANSCRIPT_TABLE, genepanel_transcript
    stored_transcripts = set(
        map(
            tuple,
            session.execute(
                sa.select(tx.c.transcript_name, gt.c.inheritance)
                .join(tx, tx.c.id == gt.c.transcript_id)
                .where(gt.c.genepanel_name == data.name, gt.c.genepanel_version == data.version),
            ),
        )
    )
    ph, gp = PHENOTYPE_TABLE, genepanel_phenotype
    stored_phenotypes = set(
        map(
            tuple,
            session.execute(
                sa.select(ph.c.gene_id, ph.c.description, ph.c.inheritance)
                .join(ph, ph.c.id == gp.c.phenotype_id)
                .where(gp.c.genepanel_name == data.name, gp.c.genepanel_version == data.version),
            ),
        )
    )
    return stored_transcripts != {
        (row.transcript_name, row.inheritance) for row in data.transcripts
    } or stored_phenotypes != {row.identity() for row in data.phenotypes}


def _differs(stored: Any, values: dict[str, Any]) -> bool:
    mapping = stored._mapping
    return any(_normalised(mapping[key]) != _normalised(value) for key, value in values.items())


def _normalised(value: Any) -> Any:
    return list(value) if isinstance(value, list | tuple) else value


# --- Bulk helpers ------------------------------------------------------------------------------


def _batches(rows: Sequence[Any], size: int = BATCH_SIZE) -> Iterator[Sequence[Any]]:
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


def _execute_many(session: Session, statement: Any, rows: Sequence[dict[str, Any]]) -> None:
    for batch in _batches(rows):
        session.execute(statement, list(batch))


def _select_in(
    session: Session, query: sa.Select[Any], column: sa.ColumnElement[Any], keys: Sequence[Any]
) -> list[Any]:
    found: list[Any] = []
    for batch in _batches(keys):
        found.extend(session.execute(query.where(column.in_(batch))).all())
    return found


def _insert_ignoring_conflicts(
    session: Session, table: sa.Table | Any, rows: Sequence[dict[str, Any]], conflict_columns: list[str]
) -> int:
    """INSERT ... ON CONFLICT DO NOTHING; returns the number of rows inserted."""
    return bulk_loader(session).insert_ignoring_conflicts(table, list(rows), conflict_columns)
