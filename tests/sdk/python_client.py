"""Sends one message of every type through the unmodified segment-analytics-python SDK, then
prints what it sent ({messageId: {type, timestamp}}) as JSON for verify.py."""
import datetime
import json
import sys

import segment.analytics as analytics

host, write_key, run_id, gzip = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "gzip"
errors = []
analytics.write_key = write_key
analytics.host = host
analytics.gzip = gzip
analytics.max_retries = 2
analytics.on_error = lambda error, items: errors.append(repr(error))

# Events dated an hour back; the SDK (2.4) sends milliseconds with a +00:00 offset.
base = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(hours=1)
sent = {}
variant = "gzip" if gzip else "plain"


def send(kind, offset_ms, call):
    message_id = f"{run_id}-python-{variant}-{kind}"
    timestamp = base + datetime.timedelta(milliseconds=offset_ms, microseconds=123)
    sent[message_id] = {"type": kind, "timestamp": timestamp.isoformat(timespec="milliseconds")}
    call(message_id, timestamp)


send("identify", 0, lambda m, t: analytics.identify("py-user", {"profession": "hygienist"}, timestamp=t, message_id=m))
send("track", 10, lambda m, t: analytics.track("py-user", "Quiz Completed", {"score": 9}, timestamp=t, message_id=m))
send("page", 20, lambda m, t: analytics.page("py-user", "Docs", "Intro", {"path": "/docs"}, timestamp=t, message_id=m))
send("screen", 30, lambda m, t: analytics.screen("py-user", "App", "Home", timestamp=t, message_id=m))
send("group", 40, lambda m, t: analytics.group("py-user", "clinic-9", {"seats": 2}, timestamp=t, message_id=m))
send("alias", 50, lambda m, t: analytics.alias("py-anon", "py-user", timestamp=t, message_id=m))

analytics.flush()
analytics.shutdown()
if errors:
    sys.exit(f"analytics-python reported errors: {errors}")
print(json.dumps(sent))
