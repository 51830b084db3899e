"""Durability: the DuckDB schema, the SQL that writes and reads rows, the write-ahead journal, the row cache."""
