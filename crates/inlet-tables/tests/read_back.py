"""Reads one copied day of a table with pyarrow, following its manifest, and prints its
schema and rows as JSON text values (for the value-by-value comparisons in databases.rs).

usage: read_back.py LAKE_DIR DATABASE TABLE DATE
"""
import datetime
import decimal
import json
import math
import pathlib
import sys

import pyarrow.parquet as pq

lake, database, table, date = sys.argv[1:5]
manifest = json.loads((pathlib.Path(lake) / f"tables/{database}/{table}/_manifests/dt={date}.json").read_text())
tables = [pq.read_table(pathlib.Path(lake) / f["key"]) for f in manifest["files"]]


def text(value):
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else str(value)
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, datetime.datetime):
        return value.isoformat()
    if isinstance(value, (datetime.date, datetime.time, decimal.Decimal)):
        return str(value)
    return str(value)


schema = {field.name: str(field.type) for field in tables[0].schema}
rows = []
for t in tables:
    for row in t.to_pylist():
        rows.append({name: text(value) for name, value in row.items()})
rows.sort(key=lambda row: int(row["id"]))
print(json.dumps({"schema": schema, "rows": rows, "manifest": manifest}, ensure_ascii=False))
