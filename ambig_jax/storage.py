"""Durable state in sqlite: one helper for transactions that hold the write lock throughout."""

import contextlib
import sqlite3


@contextlib.contextmanager
def transaction(path):
    """A connection inside `BEGIN IMMEDIATE ... COMMIT` (rolled back on error), then closed.

    IMMEDIATE takes the database's write lock before the first read, so a read-check-write
    (a budget check, say) is atomic across threads and processes.
    """
    db = sqlite3.connect(path, timeout=30.0, isolation_level=None)
    try:
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
    finally:
        db.close()
