"""Reads the lake back from S3 (Garage) with pyarrow, independently of Inlet's own code, and
checks it against the WAL dump: every messageId exactly once, in the partition of the UTC hour
of its timestamp, with the WAL's values and the documented column types."""
import collections
import datetime
import json
import os
import sys

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

dump_path, prefix = sys.argv[1], sys.argv[2]
wal = {}
for line in open(dump_path):
    if line.strip():
        record = json.loads(line)
        wal[record["event"]["messageId"]] = record

s3 = pafs.S3FileSystem(
    endpoint_override=os.environ["GARAGE_ENDPOINT"],
    access_key=os.environ["AWS_ACCESS_KEY_ID"],
    secret_key=os.environ["AWS_SECRET_ACCESS_KEY"],
    region=os.environ["AWS_REGION"],
    scheme="http",
)
root = f"{os.environ['GARAGE_BUCKET']}/{prefix}/events"
files = [f.path for f in s3.get_file_info(pafs.FileSelector(root, recursive=True)) if f.path.endswith(".parquet")]

expected_types = {
    "message_id": pa.string(),
    "type": pa.string(),
    "user_id": pa.string(),
    "timestamp": pa.timestamp("us", tz="UTC"),
    "received_at": pa.timestamp("us", tz="UTC"),
    "original_timestamp": pa.timestamp("us", tz="UTC"),
    "context_screen_width": pa.int64(),
    "properties": pa.string(),
}
problems = []
seen = collections.Counter()
for path in files:
    table = pq.read_table(path, filesystem=s3)
    for column, wanted in expected_types.items():
        if table.schema.field(column).type != wanted:
            problems.append(f"{path}: column {column} is {table.schema.field(column).type}, expected {wanted}")
    folder = path.rsplit("/", 1)[0]
    for row in table.to_pylist():
        message_id = row["message_id"]
        seen[message_id] += 1
        record = wal.get(message_id)
        if record is None:
            problems.append(f"{message_id}: in the lake but not in the WAL")
            continue
        event = record["event"]
        ts = datetime.datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00"))
        want_folder = f"{root}/source={record['source']}/dt={ts:%Y-%m-%d}/hour={ts:%H}"
        if folder != want_folder:
            problems.append(f"{message_id}: in {folder}, expected {want_folder}")
        if row["timestamp"] != ts:
            problems.append(f"{message_id}: timestamp {row['timestamp']} != {ts}")
        if row["type"] != event["type"] or row["user_id"] != event.get("userId"):
            problems.append(f"{message_id}: type/user_id differ from the WAL")
        if row["source"] != record["source"]:
            problems.append(f"{message_id}: source {row['source']} != {record['source']}")
        if "properties" in event and json.loads(row["properties"]) != event["properties"]:
            problems.append(f"{message_id}: properties differ from the WAL")

for message_id in wal:
    if seen[message_id] != 1:
        problems.append(f"{message_id}: {seen[message_id]} times in the lake")

if problems:
    sys.exit("lake verification failed:\n" + "\n".join(problems[:50]))
print(f"lake verification (pyarrow): {len(wal)} events in {len(files)} Parquet files on S3, each exactly once, in its hour's partition")
