"""One peer tool's copy of a table to a Parquet file, for bench.sh (time and memory are measured
around this process): connectorx (one connection, or split on `id` over two), ADBC's
PostgreSQL driver (streamed record batches), or DuckDB's postgres/mysql extension.

usage: peers.py TOOL ENGINE URL TABLE OUT.parquet
"""
import sys

import pyarrow.parquet as pq

tool, engine, url, table, out = sys.argv[1:6]
query = f"SELECT * FROM {table}"

if tool in ("connectorx", "connectorx-2"):
    import connectorx as cx
    extra = {"partition_on": "id", "partition_num": 2} if tool == "connectorx-2" else {}
    data = cx.read_sql(url, query, return_type="arrow", **extra)
    pq.write_table(data, out, compression="snappy", row_group_size=262144)
elif tool == "adbc":
    import adbc_driver_postgresql.dbapi as adbc
    with adbc.connect(url) as conn, conn.cursor() as cur:
        cur.execute(query)
        reader = cur.fetch_record_batch()
        with pq.ParquetWriter(out, reader.schema, compression="snappy") as writer:
            for batch in reader:
                writer.write_batch(batch, row_group_size=262144)
elif tool == "duckdb":
    import duckdb
    con = duckdb.connect()
    extension = "postgres" if engine == "postgres" else "mysql"
    con.execute(f"INSTALL {extension}; LOAD {extension};")
    con.execute(f"ATTACH '{url}' AS source (TYPE {extension}, READ_ONLY)")
    con.execute(f"COPY (SELECT * FROM source.{table}) TO '{out}' (FORMAT parquet, COMPRESSION snappy)")
else:
    sys.exit(f"unknown tool {tool}")
