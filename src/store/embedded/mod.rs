//! Embedded adapters: SQLite (WAL) for queue, tables and ViewPort, a folder for blobs.
