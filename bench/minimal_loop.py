"""The floor for a Python migration runner: `python bench/minimal_loop.py URL DIR`.

One connection; for each pending `NNN_name.sql` (integer order), one transaction with
the file's SQL and an INSERT into a history table. Already up to date: it connects,
reads the history, compares, exits. No lock, no checksums, no drift checks, no error
mapping, no argparse: everything a real runner adds is measured against this.
"""

import os
import sys

import psycopg

HISTORY = "minimal_history"


def main() -> int:
    url, directory = sys.argv[1], sys.argv[2]
    names = sorted((f for f in os.listdir(directory) if f.endswith(".sql")),
                   key=lambda f: int(f.split("_", 1)[0]))
    with psycopg.connect(url) as conn:
        try:
            done = {row[0] for row in conn.execute(f"SELECT filename FROM {HISTORY}")}
        except psycopg.errors.UndefinedTable:
            conn.rollback()
            conn.execute(f"CREATE TABLE {HISTORY} (filename TEXT PRIMARY KEY,"
                         " executed_at TIMESTAMPTZ NOT NULL DEFAULT now())")
            done = set()
        conn.commit()
        for name in names:
            if name in done:
                continue
            with open(os.path.join(directory, name), encoding="utf-8") as fh:
                text = fh.read()
            conn.execute(text)  # no parameters: sent as one simple query
            conn.execute(f"INSERT INTO {HISTORY} (filename) VALUES (%s)", (name,))
            conn.commit()
    return 0


if __name__ == "__main__":
    sys.exit(main())
