"""Input history, kept per kernel session and persisted in SQLite, as IPython does.

Each kernel start is a new session number; history_request reads this session's
lines and earlier sessions' (tail, range, search).  The file is
$GVKERNEL_HISTORY, else $XDG_DATA_HOME/gvkernel/history.sqlite.  If it cannot be
opened (read-only home, a corrupt file), history lives in memory for this session
and the kernel says so in its log: history is never a reason to fail.
"""
from __future__ import annotations

import logging
import os
import sqlite3
import threading
from typing import Optional

log = logging.getLogger("gvkernel.history")

MAX_ROWS = 10_000


def default_path() -> str:
    from gvkernel.connection import data_dir
    return os.environ.get("GVKERNEL_HISTORY") or os.path.join(data_dir("gvkernel"),
                                                               "history.sqlite")


class History:
    def __init__(self, path: Optional[str] = None):
        self.path = path or default_path()
        self._lock = threading.Lock()
        try:
            if self.path != ":memory:":
                os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
            self._db = self._open(self.path)
        except (OSError, sqlite3.Error) as e:
            log.warning("history file %s unusable (%s); keeping history in memory", self.path, e)
            self.path = ":memory:"
            self._db = self._open(":memory:")
        with self._lock, self._db:
            cur = self._db.execute("INSERT INTO sessions DEFAULT VALUES")
            self.session = int(cur.lastrowid)

    @staticmethod
    def _open(path: str) -> sqlite3.Connection:
        db = sqlite3.connect(path, check_same_thread=False, timeout=2.0)
        # store() runs on the executor for every cell: in the default rollback journal
        # each commit fsyncs (~3-5 ms here, most of an execute round trip). WAL with
        # synchronous=NORMAL fsyncs only at checkpoints (a crash may lose the last
        # lines, never corrupt the file); concurrent kernels still share the file.
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
        except sqlite3.Error:
            pass
        db.execute("CREATE TABLE IF NOT EXISTS sessions (session INTEGER PRIMARY KEY "
                   "AUTOINCREMENT)")
        db.execute("CREATE TABLE IF NOT EXISTS history (session INTEGER, line INTEGER, "
                   "source TEXT, output TEXT, PRIMARY KEY (session, line))")
        return db

    def store(self, line: int, source: str, output: Optional[str] = None) -> None:
        try:
            with self._lock, self._db:
                self._db.execute("INSERT OR REPLACE INTO history VALUES (?, ?, ?, ?)",
                                 (self.session, line, source, output))
        except sqlite3.Error as e:
            log.warning("history: cannot store line %d: %s", line, e)

    def _rows(self, sql: str, args: tuple, output: bool) -> list:
        with self._lock:
            rows = self._db.execute(sql, args).fetchall()
        if output:
            return [[r[0], r[1], [r[2], r[3]]] for r in rows]
        return [[r[0], r[1], r[2]] for r in rows]

    def request(self, content: dict) -> list:
        """The `history` list of a history_reply."""
        kind = content.get("hist_access_type", "tail")
        if kind not in ("tail", "range", "search"):
            raise ValueError(f"unknown hist_access_type {kind!r}")
        output = bool(content.get("output", False))
        n = content.get("n")
        n = MAX_ROWS if not isinstance(n, int) or isinstance(n, bool) or n <= 0 else min(n, MAX_ROWS)
        cols = "session, line, source, output"
        if kind == "tail":
            rows = self._rows(f"SELECT {cols} FROM history ORDER BY session DESC, line DESC "
                              "LIMIT ?", (n,), output)
            return rows[::-1]
        if kind == "range":
            session = content.get("session", 0)
            session = session if isinstance(session, int) else 0
            if session <= 0:
                session += self.session
            start = content.get("start", 0)
            stop = content.get("stop")
            start = start if isinstance(start, int) else 0
            if isinstance(stop, int) and stop > 0:
                return self._rows(f"SELECT {cols} FROM history WHERE session=? AND line>=? "
                                  "AND line<? ORDER BY line LIMIT ?",
                                  (session, start, stop, MAX_ROWS), output)
            return self._rows(f"SELECT {cols} FROM history WHERE session=? AND line>=? "
                              "ORDER BY line LIMIT ?", (session, start, MAX_ROWS), output)
        if kind == "search":
            pattern = content.get("pattern", "*")
            pattern = pattern if isinstance(pattern, str) else "*"
            if content.get("unique", False):
                # The latest line of each distinct source: with max() in an aggregate,
                # SQLite takes the bare columns from the row holding that max.
                rows = self._rows(f"SELECT {cols}, max(session * 4294967296 + line) "
                                  "FROM history WHERE source GLOB ? GROUP BY source "
                                  "ORDER BY session DESC, line DESC LIMIT ?",
                                  (pattern, n), output)
            else:
                rows = self._rows(f"SELECT {cols} FROM history WHERE source GLOB ? "
                                  "ORDER BY session DESC, line DESC LIMIT ?",
                                  (pattern, n), output)
            return rows[::-1]
        raise ValueError(f"unknown hist_access_type {kind!r}")

    def close(self) -> None:
        with self._lock:
            try:
                self._db.close()
            except sqlite3.Error:
                pass

