"""Bytes of a lake's event files that the metrics read: all of them, and the compressed column
chunks of the columns the SQL reads (what Spectrum scans and bills), per event and per UTC day.
    python scan_bytes.py LAKE
Prints JSON. Needs pyarrow (the test suite's virtualenv has it)."""
import collections
import json
import pathlib
import sys

import pyarrow.parquet as pq

# The event columns day_read.sql reads (load_events.sql lists the same); source, dt and hour are
# partitions, which cost nothing to scan.
READ = ["message_id", "type", "event", "name", "user_id", "anonymous_id", "previous_id", "timestamp",
        "received_at", "context_page_path", "properties", "traits"]

lake = pathlib.Path(sys.argv[1])
files = sorted((lake / "events").rglob("*.parquet"))
total = read = rows = 0
by_day = collections.Counter()
for path in files:
    meta = pq.ParquetFile(path).metadata
    rows += meta.num_rows
    total += path.stat().st_size
    day = next(p.split("=", 1)[1] for p in path.parts if p.startswith("dt="))
    for g in range(meta.num_row_groups):
        group = meta.row_group(g)
        for c in range(group.num_columns):
            column = group.column(c)
            if column.path_in_schema in READ:
                read += column.total_compressed_size
                by_day[day] += column.total_compressed_size
print(json.dumps({
    "files": len(files),
    "events": rows,
    "lake_bytes": total,
    "read_column_bytes": read,
    "lake_bytes_per_event": round(total / rows, 2),
    "read_bytes_per_event": round(read / rows, 2),
    "read_bytes_largest_utc_day": max(by_day.values()),
}, indent=1))
