"""Bulk primitives behind one interface, with one implementation per database.

The deposit code (``engine.deposit``) writes through a :class:`BulkLoader` and never asks which
database it talks to: everything that differs between PostgreSQL and SQLite is a method here, in
the manner of httpx's ``BaseTransport`` with its implementations. :func:`bulk_loader` picks the
implementation for a session; it is the only place that looks at the dialect.

- :class:`PostgresLoader`: ``COPY ... FROM STDIN`` on the session's own connection, sequences for
  ids, data-modifying CTEs, jsonb equality.
- :class:`SqliteLoader`: ``executemany`` on the raw driver cursor, ids after ``MAX(id)`` (SQLite
  has one writer at a time), JSON compared as parsed values by a registered SQL function.

Both run inside the caller's transaction, so a bulk write is committed or rolled back together
with everything else the caller did - except inside :meth:`BulkLoader.committed_apart`, whose
writes PostgreSQL commits on their own (the shared allele merge, so that concurrent imports do
not wait for each other's whole transaction).
"""

from __future__ import annotations

import csv
import enum
import io
import json
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from engine.db.copytext import NULL as PG_NULL


class RowFormat(enum.Enum):
    """How a loader takes pre-encoded rows (``BulkLoader.load_encoded``)."""

    COPY_TEXT = "copy_text"  # str/bytes in PostgreSQL's COPY text format, rows ending in newlines
    PARAMETERS = "parameters"  # a list of parameter tuples


class BulkLoader(ABC):
    """Bulk operations on one database connection (a session's, or one of its own)."""

    row_format: RowFormat
    # Row builders write this for a missing value: COPY's NULL marker, or None for executemany.
    null: Any
    # Scratch JSON columns: jsonb on PostgreSQL so documents can be compared in SQL.
    json_type: str

    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    def execute(
        self,
        sql: str,
        params: dict[str, Any] | None = None,
        types: dict[str, sa.types.TypeEngine[Any]] | None = None,
    ) -> sa.CursorResult[Any]:
        """Run ``sql`` with ``params``; ``types`` names parameters that need a column type's
        conversion (e.g. a datetime for a DateTime column on SQLite)."""
        statement = sa.text(sql)
        if types:
            statement = statement.bindparams(
                *(sa.bindparam(name, type_=type_) for name, type_ in types.items())
            )
        return self.connection.execute(statement, params or {})

    @abstractmethod
    def committed_apart(self) -> AbstractContextManager[BulkLoader]:
        """A loader whose writes are committed on their own when the block ends (rolled back if
        it raises), whatever later happens to this loader's transaction. Scratch tables are not
        shared with this loader."""

    # -- scratch tables ---------------------------------------------------------------------

    @abstractmethod
    def create_scratch_table(self, name: str, columns: str) -> None:
        """An empty temporary table private to this connection (dropped at commit on PostgreSQL)."""

    @abstractmethod
    def create_scratch_table_as(self, name: str, select_sql: str) -> None: ...

    @abstractmethod
    def drop_scratch_table(self, name: str) -> None: ...

    @abstractmethod
    def analyze(self, name: str) -> None:
        """Give the planner statistics of a freshly filled scratch table (where it needs them)."""

    # -- loading rows -----------------------------------------------------------------------

    @abstractmethod
    def load(self, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> int:
        """Append ``rows`` (values in ``columns`` order, ``self.null`` for NULL) to ``table``."""

    @abstractmethod
    def load_encoded(self, table: str, columns: Sequence[str], payload: Any) -> int:
        """Append rows already encoded in this loader's :attr:`row_format`; returns the count."""

    @abstractmethod
    def reserve_ids(self, table: str, count: int) -> list[int]:
        """``count`` fresh primary keys for ``table`` that no other writer will use."""

    @abstractmethod
    def insert_new(
        self,
        table: str,
        columns: Sequence[str],
        stage: str,
        n_staged: int,
        identity: Sequence[str],
        *,
        try_plain_insert: bool,
    ) -> tuple[int, dict[int, int], bool]:
        """Insert the ``n_staged`` rows of scratch table ``stage`` (which has every column of
        ``columns``, the first being ``id``) that are not in ``table`` yet, by the unique
        ``identity`` columns, inserted in the order of those columns.

        Returns (rows inserted, {staged id: stored id} for rows already stored or repeated in the
        stage, whether a plain INSERT of every row worked). ``try_plain_insert`` asks to try a
        plain INSERT first, which is cheaper where every row is new (a fresh VCF)."""

    @abstractmethod
    def update_returning_into(
        self,
        update_sql: str,
        alias: str,
        returning: Sequence[str],
        into: str,
        params: dict[str, Any],
        types: dict[str, sa.types.TypeEngine[Any]] | None = None,
    ) -> int:
        """Run ``update_sql`` (an UPDATE of a table aliased ``alias``, without RETURNING), append
        the ``returning`` columns of every updated row to scratch table ``into``; returns how many
        rows were updated."""

    @abstractmethod
    def json_differs(self, left: str, right: str) -> str:
        """A SQL condition: the JSON documents ``left`` and ``right`` are not equal as values."""

    @abstractmethod
    def insert_ignoring_conflicts(
        self, table: sa.Table, rows: Sequence[dict[str, Any]], conflict_columns: Sequence[str]
    ) -> int:
        """INSERT ... ON CONFLICT DO NOTHING of ``rows``; returns how many were inserted."""

    # -- reading -------------------------------------------------------------------------------

    @abstractmethod
    def json_text(self, column: str) -> str:
        """A SQL expression: the JSON ``column`` as text (for a fast parser in Python)."""

    @abstractmethod
    def lock_clause(self, alias: str) -> str:
        """A suffix locking the selected rows of ``alias`` until commit (empty where the database
        has one writer at a time anyway)."""

    @abstractmethod
    def copy_out(self, select_sql: str, params: dict[str, Any], out: io.TextIOBase) -> int:
        """Write the rows of ``select_sql`` to ``out`` as tab-separated lines; returns the count."""

    def _raw_cursor(self) -> Any:
        return self.connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]


def bulk_loader(session: Session) -> BulkLoader:
    """The loader for the connection ``session`` is using (pending ORM changes flushed first)."""
    session.flush()
    connection = session.connection()
    dialect = connection.dialect.name
    if dialect == "postgresql":
        return PostgresLoader(connection)
    if dialect == "sqlite":
        return SqliteLoader(connection)
    raise NotImplementedError(f"bulk writes support PostgreSQL and SQLite, not {dialect}")


# RETURNING makes SQLAlchemy send multi-row VALUES batches ("insertmanyvalues"); without it an
# ON CONFLICT insert falls back to the driver's executemany, one round trip per row on psycopg2.
# It also counts exactly the rows that were inserted.
_INSERT_BATCH = 1000


def _insert_on_conflict(
    connection: Connection,
    statement: Any,
    table: sa.Table,
    rows: Sequence[dict[str, Any]],
    conflict_columns: Sequence[str],
) -> int:
    statement = statement.on_conflict_do_nothing(index_elements=list(conflict_columns)).returning(
        *(table.c[name] for name in conflict_columns)
    )
    rows = list(rows)
    return sum(
        len(connection.execute(statement, rows[start : start + _INSERT_BATCH]).all())
        for start in range(0, len(rows), _INSERT_BATCH)
    )


class PostgresLoader(BulkLoader):
    row_format = RowFormat.COPY_TEXT
    null = PG_NULL
    json_type = "jsonb"

    @contextmanager
    def committed_apart(self) -> Iterator[BulkLoader]:
        # A second connection from the same pool (same search_path), in a transaction of its own.
        with self.connection.engine.connect() as connection, connection.begin():
            yield PostgresLoader(connection)

    def create_scratch_table(self, name: str, columns: str) -> None:
        self.drop_scratch_table(name)
        self.execute(f"CREATE TEMPORARY TABLE {name} ({columns}) ON COMMIT DROP")

    def create_scratch_table_as(self, name: str, select_sql: str) -> None:
        self.drop_scratch_table(name)
        self.execute(f"CREATE TEMPORARY TABLE {name} ON COMMIT DROP AS {select_sql}")

    def drop_scratch_table(self, name: str) -> None:
        self.execute(f"DROP TABLE IF EXISTS pg_temp.{name}")

    def analyze(self, name: str) -> None:
        # Temporary tables are never auto-analyzed; without statistics PostgreSQL guesses badly.
        self.execute(f"ANALYZE {name}")

    def load(self, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> int:
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\n").writerows(rows)
        if buffer.tell() == 0:
            return 0
        buffer.seek(0)
        return self._copy(
            f"COPY {table} ({', '.join(columns)}) FROM STDIN WITH (FORMAT csv, NULL '{PG_NULL}')", buffer
        )

    def load_encoded(self, table: str, columns: Sequence[str], payload: str | bytes) -> int:
        """Rows as COPY text (tab-separated, ``\\N`` for NULL, one per line; bytes are UTF-8)."""
        if not payload:
            return 0
        stream = io.BytesIO(payload) if isinstance(payload, bytes) else io.StringIO(payload)
        return self._copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN", stream)

    def _copy(self, statement: str, stream: io.IOBase) -> int:
        cursor = self._raw_cursor()
        try:
            cursor.copy_expert(statement, stream, size=1 << 20)
            return int(cursor.rowcount)
        finally:
            cursor.close()

    def reserve_ids(self, table: str, count: int) -> list[int]:
        if count == 0:
            return []
        # Resolve the sequence once; calling pg_get_serial_sequence per row doubles the cost.
        sequence = self.execute("SELECT pg_get_serial_sequence(:t, 'id')", {"t": table}).scalar_one()
        result = self.execute(
            "SELECT nextval(CAST(:s AS regclass)) FROM generate_series(1, :n)", {"s": sequence, "n": count}
        )
        return [row[0] for row in result]

    def insert_new(
        self,
        table: str,
        columns: Sequence[str],
        stage: str,
        n_staged: int,
        identity: Sequence[str],
        *,
        try_plain_insert: bool,
    ) -> tuple[int, dict[int, int], bool]:
        names = ", ".join(columns)
        # Rows go in in identity order: two concurrent merges that share rows then wait for each
        # other at most one way round (in any other order each can hold a row the other needs).
        if try_plain_insert and self._insert_if_all_new(table, names, stage, identity):
            return n_staged, {}, True
        inserted = f"{stage}_inserted"
        match = " AND ".join(f"a.{c} = s.{c}" for c in identity)
        # Only rows that were not inserted need the (index-probing) identity join.
        self.create_scratch_table(inserted, "id INTEGER")
        n_new = self.execute(
            f"WITH ins AS (INSERT INTO {table} ({names}) SELECT {names} FROM {stage} "
            f"ORDER BY {', '.join(identity)} ON CONFLICT DO NOTHING RETURNING id) "
            f"INSERT INTO {inserted} SELECT id FROM ins"
        ).rowcount
        moved: dict[int, int] = {}
        if n_new < n_staged:  # typical for a fresh VCF: every staged row was new, no lookup
            self.analyze(inserted)
            self.analyze(stage)
            moved = _id_pairs(
                self.execute(
                    f"SELECT s.id, a.id FROM {stage} s JOIN {table} a ON {match} "
                    f"WHERE NOT EXISTS (SELECT 1 FROM {inserted} i WHERE i.id = s.id)"
                )
            )
        self.drop_scratch_table(inserted)
        return int(n_new), moved, False

    def _insert_if_all_new(self, table: str, names: str, stage: str, identity: Sequence[str]) -> bool:
        """Insert the staged rows with a plain INSERT, if none is stored yet.

        A plain INSERT costs about half of ``ON CONFLICT DO NOTHING`` (bench/README.md,
        "Measurements behind code choices") and is what a VCF of new variants needs. In a savepoint: the first
        stored row (or one a concurrent import is inserting) raises a unique violation, which is
        rolled back, and the caller then merges with ON CONFLICT only. With many stored rows the
        violation comes within the first rows, so the failed try costs little.
        """
        savepoint = self.connection.begin_nested()
        try:
            self.execute(
                f"INSERT INTO {table} ({names}) SELECT {names} FROM {stage} ORDER BY {', '.join(identity)}"
            )
        except sa.exc.IntegrityError:
            savepoint.rollback()
            return False
        savepoint.commit()
        return True

    def update_returning_into(
        self,
        update_sql: str,
        alias: str,
        returning: Sequence[str],
        into: str,
        params: dict[str, Any],
        types: dict[str, sa.types.TypeEngine[Any]] | None = None,
    ) -> int:
        return int(
            self.execute(
                f"WITH changed AS ({update_sql} RETURNING {', '.join(f'{alias}.{c}' for c in returning)}) "
                f"INSERT INTO {into} SELECT * FROM changed",
                params,
                types,
            ).rowcount
        )

    def json_differs(self, left: str, right: str) -> str:
        return f"{left} <> {right}"

    def insert_ignoring_conflicts(
        self, table: sa.Table, rows: Sequence[dict[str, Any]], conflict_columns: Sequence[str]
    ) -> int:
        if not rows:
            return 0
        from sqlalchemy.dialects.postgresql import insert

        return _insert_on_conflict(self.connection, insert(table), table, rows, conflict_columns)

    def json_text(self, column: str) -> str:
        return f"{column}::text"

    def lock_clause(self, alias: str) -> str:
        return f" FOR NO KEY UPDATE OF {alias}"

    def copy_out(self, select_sql: str, params: dict[str, Any], out: io.TextIOBase) -> int:
        """PostgreSQL formats the rows itself: COPY's text format is tab-separated lines."""
        cursor = self._raw_cursor()
        try:
            # psycopg2 style placeholders, values quoted by the driver (mogrify), as COPY takes none.
            compiled = sa.text(select_sql).compile(dialect=self.connection.dialect).string
            query = cursor.mogrify(compiled, params)
            cursor.copy_expert(f"COPY ({query.decode()}) TO STDOUT", out, size=1 << 20)
            return int(cursor.rowcount)
        finally:
            cursor.close()


def _json_differs(left: str | None, right: str | None) -> bool:
    if left is None or right is None:
        return left is not right
    return bool(json.loads(left) != json.loads(right))


class SqliteLoader(BulkLoader):
    row_format = RowFormat.PARAMETERS
    null = None
    json_type = "TEXT"

    def __init__(self, connection: Connection) -> None:
        super().__init__(connection)
        # JSON is text in SQLite: key order and spacing must not make equal documents differ.
        self.connection.connection.dbapi_connection.create_function(  # type: ignore[union-attr]
            "annostream_json_differs", 2, _json_differs, deterministic=True
        )

    @contextmanager
    def committed_apart(self) -> Iterator[BulkLoader]:
        # SQLite has one writer at a time: a second transaction would wait for this one, which
        # already holds the write lock. Nothing waits on it either, so the caller's transaction
        # is used.
        yield self

    def create_scratch_table(self, name: str, columns: str) -> None:
        self.drop_scratch_table(name)
        self.execute(f"CREATE TEMPORARY TABLE {name} ({columns})")

    def create_scratch_table_as(self, name: str, select_sql: str) -> None:
        self.drop_scratch_table(name)
        self.execute(f"CREATE TEMPORARY TABLE {name} AS {select_sql}")

    def drop_scratch_table(self, name: str) -> None:
        self.execute(f"DROP TABLE IF EXISTS temp.{name}")

    def analyze(self, name: str) -> None:
        """SQLite plans the small scratch tables well without statistics."""

    def load(self, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> int:
        placeholders = ", ".join("?" for _ in columns)
        cursor = self._raw_cursor()
        try:
            cursor.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({placeholders})", rows)
            return int(cursor.rowcount)
        finally:
            cursor.close()

    def load_encoded(self, table: str, columns: Sequence[str], payload: Sequence[Sequence[Any]]) -> int:
        return self.load(table, columns, payload)

    def reserve_ids(self, table: str, count: int) -> list[int]:
        if count == 0:
            return []
        # SQLite allows one writer at a time and this transaction has already written, so
        # nobody else can take ids between this read and our insert.
        highest = self.execute(f"SELECT COALESCE(MAX(id), 0) FROM {table}").scalar_one()
        return list(range(highest + 1, highest + 1 + count))

    def insert_new(
        self,
        table: str,
        columns: Sequence[str],
        stage: str,
        n_staged: int,
        identity: Sequence[str],
        *,
        try_plain_insert: bool,
    ) -> tuple[int, dict[int, int], bool]:
        names = ", ".join(columns)
        match = " AND ".join(f"a.{c} = s.{c}" for c in identity)
        # WHERE true: SQLite needs it to parse INSERT ... SELECT ... ON CONFLICT unambiguously.
        n_new = self.execute(
            f"INSERT INTO {table} ({names}) SELECT {names} FROM {stage} WHERE true ON CONFLICT DO NOTHING"
        ).rowcount
        moved = _id_pairs(
            self.execute(f"SELECT s.id, a.id FROM {stage} s JOIN {table} a ON {match} WHERE a.id <> s.id")
        )
        return int(n_new), moved, False

    def update_returning_into(
        self,
        update_sql: str,
        alias: str,
        returning: Sequence[str],
        into: str,
        params: dict[str, Any],
        types: dict[str, sa.types.TypeEngine[Any]] | None = None,
    ) -> int:
        # SQLite has RETURNING, but not in a CTE: the rows come back and go in again. Its
        # RETURNING sees only the updated table, by unqualified names.
        rows = [
            tuple(row)
            for row in self.execute(f"{update_sql} RETURNING {', '.join(returning)}", params, types)
        ]
        if rows:
            self.connection.exec_driver_sql(
                f"INSERT INTO {into} VALUES ({', '.join('?' for _ in rows[0])})", rows
            )
        return len(rows)

    def json_differs(self, left: str, right: str) -> str:
        return f"annostream_json_differs({left}, {right})"

    def insert_ignoring_conflicts(
        self, table: sa.Table, rows: Sequence[dict[str, Any]], conflict_columns: Sequence[str]
    ) -> int:
        if not rows:
            return 0
        from sqlalchemy.dialects.sqlite import insert

        return _insert_on_conflict(self.connection, insert(table), table, rows, conflict_columns)

    def json_text(self, column: str) -> str:
        return column  # JSON is stored as text

    def lock_clause(self, alias: str) -> str:
        return ""  # one writer at a time: the transaction already excludes the others

    def copy_out(self, select_sql: str, params: dict[str, Any], out: io.TextIOBase) -> int:
        count = 0
        for row in self.execute(select_sql, params):
            out.write("\t".join(map(str, row)) + "\n")
            count += 1
        return count


def _id_pairs(rows: Iterable[Any]) -> dict[int, int]:
    return {int(staged): int(stored) for staged, stored in rows}
