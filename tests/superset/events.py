"""Prints /v1/import batches (one JSON per line, with its source's write key) for a small but
lively lake: two apps, 40 users over 14 days from 2026-11-01 (UTC), page views on a few paths,
two sessions on some days, and a few track events, deterministic (seeded)."""
import json
import random
import sys

keys = dict(arg.split("=") for arg in sys.argv[1:])   # source=write_key
rng = random.Random(7)
paths = ["/", "/articles/implants", "/articles/whitening", "/cases/42", "/jobs"]
events_by_source = {source: [] for source in keys}
for user in range(40):
    source = "dentists" if user % 3 else "hygienists"
    first_day = rng.randrange(0, 10)
    for day in range(first_day, 14):
        if rng.random() > 0.55:
            continue
        for session_start in ([9, 20] if rng.random() < 0.3 else [9]):
            for step in range(rng.randrange(1, 5)):
                ts = f"2026-11-{day + 1:02d}T{session_start:02d}:{step * 3:02d}:00Z"
                path = rng.choice(paths)
                base = {"userId": f"u{user}", "timestamp": ts, "messageId": f"ss-{user}-{day}-{session_start}-{step}"}
                events_by_source[source].append({**base, "type": "page", "name": path, "properties": {"path": path}, "context": {"page": {"path": path}}})
                if step == 1:
                    events_by_source[source].append({**base, "messageId": base["messageId"] + "-t", "type": "track", "event": rng.choice(["Article Read", "Case Shared", "Job Viewed"])})
for source, batch in events_by_source.items():
    print(json.dumps({"writeKey": keys[source], "batch": batch}))
