"""Prints a /v1/import batch: 5 users active on 2026-11-20 in Seoul (one of them also at 23:30
local, which is 14:30 UTC, still the 20th in Seoul), 3 of them also on the 19th."""
import json
import sys

write_key = sys.argv[1]
events = []
def page(user, ts, path):
    events.append({"type": "page", "userId": user, "name": path, "timestamp": ts,
                   "messageId": f"af-{user}-{ts}", "properties": {"path": path},
                   "context": {"page": {"path": path}}})
for i in range(1, 6):
    page(f"user-{i}", "2026-11-20T01:00:00Z", "/articles/1")   # 10:00 in Seoul
for i in range(1, 4):
    page(f"user-{i}", "2026-11-19T02:00:00Z", "/home")          # 11:00 on the 19th
page("user-5", "2026-11-20T14:30:00Z", "/articles/2")           # 23:30 on the 20th in Seoul
print(json.dumps({"writeKey": write_key, "batch": events}))
