"""Reads a local lake's `events/` and `blocked/` tables with pyarrow and prints, per table and
source, each row's message id and violation kinds, as JSON: what the tracking-plan test checks.

    verify_plans.py LAKE_DIR
"""

import json
import os
import sys

import pyarrow.parquet as pq


def main() -> int:
    lake = sys.argv[1]
    out = {}
    for table in ("events", "blocked"):
        rows = {}
        root = os.path.join(lake, table)
        for folder, _, files in os.walk(root):
            for name in files:
                if not name.endswith(".parquet"):
                    continue
                data = pq.read_table(os.path.join(folder, name), columns=["source", "message_id", "violations"])
                for row in data.to_pylist():
                    kinds = sorted(v["kind"] + " " + v["property"] for v in json.loads(row["violations"] or "[]"))
                    rows.setdefault(row["source"], {})[row["message_id"]] = kinds
        out[table] = rows
    json.dump(out, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
