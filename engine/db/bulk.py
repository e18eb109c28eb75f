"""Dialect-specific bulk primitives: load many rows, reserve many ids, scratch tables.

PostgreSQL gets ``COPY ... FROM STDIN`` (CSV) on the session's own connection, SQLite gets
``executemany`` on the raw driver cursor. Both run inside the caller's transaction, so a bulk
write is committed or rolled back together with everything else the caller did.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

# What COPY reads as NULL; row builders put it where a value is missing (see ``BulkLoader.null``).
PG_NULL = "\\N"


class BulkLoader:
    """Bulk operations on the connection a session is using."""

    def __init__(self, session: Session) -> None:
        session.flush()
        self.connection: Connection = session.connection()
        self.dialect = self.connection.dialect.name
        if self.dialect not in ("postgresql", "sqlite"):
            raise NotImplementedError(f"bulk writes support PostgreSQL and SQLite, not {self.dialect}")
        self.is_postgres = self.dialect == "postgresql"
        # Row builders write this for a missing value: COPY's NULL marker, or None for executemany.
        self.null: Any = PG_NULL if self.is_postgres else None
        # Scratch JSON columns are jsonb on PostgreSQL so documents can be compared in SQL.
        self.json_type = "jsonb" if self.is_postgres else "TEXT"

    def execute(self, sql: str, params: dict[str, Any] | None = None) -> sa.CursorResult[Any]:
        return self.connection.execute(sa.text(sql), params or {})

    def create_scratch_table(self, name: str, columns: str) -> None:
        """A temporary table private to this connection, empty, dropped at commit on PostgreSQL."""
        self.drop_scratch_table(name)
        suffix = " ON COMMIT DROP" if self.is_postgres else ""
        self.execute(f"CREATE TEMPORARY TABLE {name} ({columns}){suffix}")

    def create_scratch_table_as(self, name: str, select_sql: str) -> None:
        self.drop_scratch_table(name)
        suffix = " ON COMMIT DROP" if self.is_postgres else ""
        self.execute(f"CREATE TEMPORARY TABLE {name}{suffix} AS {select_sql}")

    def drop_scratch_table(self, name: str) -> None:
        schema = "pg_temp" if self.is_postgres else "temp"
        self.execute(f"DROP TABLE IF EXISTS {schema}.{name}")

    def analyze(self, name: str) -> None:
        # Temporary tables are never auto-analyzed; without statistics PostgreSQL guesses badly.
        if self.is_postgres:
            self.execute(f"ANALYZE {name}")

    def load(self, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> int:
        """Append ``rows`` (values in ``columns`` order, ``self.null`` for NULL) to ``table``."""
        if self.is_postgres:
            return self._copy(table, columns, rows)
        return self._executemany(table, columns, rows)

    def load_text(self, table: str, columns: Sequence[str], text: str | bytes) -> int:
        """PostgreSQL: append rows given as COPY text (tab-separated, ``\\N`` for NULL, one per line;
        bytes are UTF-8)."""
        if not text:
            return 0
        stream = io.BytesIO(text) if isinstance(text, bytes) else io.StringIO(text)
        cursor = self._raw_cursor()
        try:
            cursor.copy_expert(f"COPY {table} ({', '.join(columns)}) FROM STDIN", stream, size=1 << 20)
            return int(cursor.rowcount)
        finally:
            cursor.close()

    def reserve_ids(self, table: str, count: int) -> list[int]:
        """``count`` fresh primary keys for ``table`` that no other writer will use."""
        if count == 0:
            return []
        if self.is_postgres:
            # Resolve the sequence once; calling pg_get_serial_sequence per row doubles the cost.
            sequence = self.execute("SELECT pg_get_serial_sequence(:t, 'id')", {"t": table}).scalar_one()
            result = self.execute("SELECT nextval(CAST(:s AS regclass)) FROM generate_series(1, :n)",
                                  {"s": sequence, "n": count})
            return [row[0] for row in result]
        # SQLite allows one writer at a time and this transaction has already written, so
        # nobody else can take ids between this read and our insert.
        highest = self.execute(f"SELECT COALESCE(MAX(id), 0) FROM {table}").scalar_one()
        return list(range(highest + 1, highest + 1 + count))

    def _raw_cursor(self) -> Any:
        return self.connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]

    def _copy(self, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> int:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerows(rows)
        size = buffer.tell()
        if size == 0:
            return 0
        buffer.seek(0)
        cursor = self._raw_cursor()
        try:
            cursor.copy_expert(
                f"COPY {table} ({', '.join(columns)}) FROM STDIN WITH (FORMAT csv, NULL '{PG_NULL}')",
                buffer,
                size=1 << 20,
            )
            return int(cursor.rowcount)
        finally:
            cursor.close()

    def _executemany(self, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> int:
        placeholders = ", ".join("?" for _ in columns)
        cursor = self._raw_cursor()
        try:
            cursor.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({placeholders})", rows)
            return int(cursor.rowcount)
        finally:
            cursor.close()
