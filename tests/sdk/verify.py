"""Checks `inlet wal dump` output against what the SDK clients said they sent: every messageId
stored exactly once, with its type, its client timestamp as originalTimestamp, and
timestamp = receivedAt - (sentAt - originalTimestamp) to the microsecond."""
import collections
import datetime
import json
import sys


def parse(ts):
    return datetime.datetime.fromisoformat(ts.replace("Z", "+00:00"))


dump_path, *sent_paths = sys.argv[1:]
records = [json.loads(line) for line in open(dump_path) if line.strip()]
by_id = collections.defaultdict(list)
for record in records:
    by_id[record["event"]["messageId"]].append(record)

expected = {}
for path in sent_paths:
    expected.update(json.load(open(path)))

problems = []
for message_id, want in expected.items():
    stored = by_id.get(message_id, [])
    if len(stored) != 1:
        problems.append(f"{message_id}: stored {len(stored)} times")
        continue
    event = stored[0]["event"]
    if event["type"] != want["type"]:
        problems.append(f"{message_id}: type {event['type']} != {want['type']}")
    original = parse(event["originalTimestamp"])
    if original != parse(want["timestamp"]):
        problems.append(f"{message_id}: originalTimestamp {event['originalTimestamp']} != {want['timestamp']}")
    corrected = parse(event["receivedAt"]) - (parse(event["sentAt"]) - original)
    if parse(event["timestamp"]) != corrected:
        problems.append(f"{message_id}: timestamp {event['timestamp']} is not receivedAt - (sentAt - originalTimestamp)")
    # Client and server share a clock here, so the correction must move the time by no more
    # than the request's transit (the events themselves are dated an hour back).
    if abs((parse(event["timestamp"]) - original).total_seconds()) > 5:
        problems.append(f"{message_id}: correction moved the timestamp too far ({event['timestamp']} vs {event['originalTimestamp']})")
    if "writeKey" in event or "_metadata" in event:
        problems.append(f"{message_id}: write key or _metadata stored")

if problems:
    sys.exit("SDK verification failed:\n" + "\n".join(problems))
print(f"SDK verification: {len(expected)} messages from {len(sent_paths)} client runs stored exactly once with corrected timestamps")
