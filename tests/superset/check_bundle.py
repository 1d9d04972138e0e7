"""Imports deploy/superset/inlet_dashboard into a running Superset through its API, points the
bundle's database at the test PostgreSQL, then runs every chart's saved query
(`GET /api/v1/chart/{id}/data/`) and checks it returns rows; the DAU chart's numbers are
compared with the table, and the source filter is applied to one query."""
import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import requests

url, bundle_dir, sqlalchemy_uri, pg_url = sys.argv[1:]
bundle_dir = Path(bundle_dir)
http = requests.Session()
token = http.post(f"{url}/api/v1/security/login", json={"username": "admin", "password": "admin", "provider": "db", "refresh": False}).json()["access_token"]
http.headers["Authorization"] = f"Bearer {token}"


def ok(response):
    assert response.status_code < 300, f"{response.request.method} {response.url}: {response.status_code} {response.text[:2000]}"
    return response.json()


def psql(sql):
    args = dict(part.split("=", 1) for part in pg_url.split())
    env = {"PGHOST": args["host"], "PGPORT": args["port"], "PGUSER": args["user"], "PGDATABASE": args["dbname"]}
    return subprocess.run(["psql", "-XAtq", "-c", sql], check=True, capture_output=True, text=True, env=env).stdout.strip()


# The bundle exactly as checked in, zipped the way Superset exports (one top folder).
archive = io.BytesIO()
with zipfile.ZipFile(archive, "w") as zf:
    for path in sorted(bundle_dir.rglob("*.yaml")):
        zf.write(path, f"inlet_dashboard/{path.relative_to(bundle_dir)}")
ok(http.post(f"{url}/api/v1/dashboard/import/", files={"formData": ("inlet_dashboard.zip", archive.getvalue(), "application/zip")}, data={"overwrite": "true"}))

databases = ok(http.get(f"{url}/api/v1/database/", params={"q": "(page_size:100)"}))["result"]
[database] = [d for d in databases if d["database_name"] == "Inlet metrics"]
ok(http.put(f"{url}/api/v1/database/{database['id']}", json={"sqlalchemy_uri": sqlalchemy_uri}))

dashboard = ok(http.get(f"{url}/api/v1/dashboard/inlet"))["result"]
member_charts = ok(http.get(f"{url}/api/v1/dashboard/inlet-members/charts"))["result"]
charts = ok(http.get(f"{url}/api/v1/dashboard/inlet/charts"))["result"] + member_charts
expected_charts = len(list((bundle_dir / "charts").glob("*.yaml")))
assert len(charts) == expected_charts, f"dashboards have {len(charts)} charts, the bundle {expected_charts}"
metadata = json.loads(dashboard["json_metadata"])
[source_filter] = metadata["native_filter_configuration"]
assert source_filter["targets"][0]["column"]["name"] == "source" and "datasetId" in source_filter["targets"][0], source_filter

datasets = ok(http.get(f"{url}/api/v1/dataset/", params={"q": "(page_size:100)"}))["result"]
for listed in datasets:
    detail = ok(http.get(f"{url}/api/v1/dataset/{listed['id']}"))["result"]
    temporal = [c["column_name"] for c in detail["columns"] if c["is_dttm"]]
    assert temporal == [detail["main_dttm_col"]], f"{detail['table_name']}: temporal columns {temporal}"

rows = {}
for chart in charts:
    data = ok(http.get(f"{url}/api/v1/chart/{chart['id']}/data/"))
    result = data["result"][0]
    assert result.get("error") is None, f"{chart['slice_name']}: {result.get('error')}"
    assert result["rowcount"] > 0, f"{chart['slice_name']}: no rows"
    rows[chart["slice_name"]] = result

active = rows["Daily, weekly and monthly active users"]["data"]
by_day = {r["activity_date"]: r["DAU"] for r in active}
expected = psql("SELECT sum(dau) FROM inlet.active_users WHERE activity_date = '2026-11-10'")
day_key = [k for k in by_day if str(k).startswith("2026-11-10") or k == 1794268800000]
assert day_key and str(by_day[day_key[0]]) == expected, f"DAU on 2026-11-10: chart {by_day} vs table {expected}"

# The source filter as the dashboard applies it: the same query, one source.
chart = next(c for c in charts if c["slice_name"] == "Daily, weekly and monthly active users")
context = json.loads(ok(http.get(f"{url}/api/v1/chart/{chart['id']}"))["result"]["query_context"])
context["queries"][0]["filters"] = [{"col": "source", "op": "IN", "val": ["hygienists"]}]
filtered = ok(http.post(f"{url}/api/v1/chart/data", json=context))["result"][0]["data"]
total = sum(r["DAU"] for r in filtered)
expected = psql("SELECT sum(dau) FROM inlet.active_users WHERE source = 'hygienists'")
assert str(total) == expected, f"DAU filtered to hygienists: {total} vs {expected}"

# The members dashboard's virtual dataset: active users by profession equal the join in SQL.
by_profession = rows["Daily active users by profession"]["data"]
chart_total = sum(r["Active users"] for r in by_profession)
expected = psql("SELECT count(*) FROM inlet.daily_user_activity a JOIN inlet.members m ON m.user_id = a.user_key")
assert str(chart_total) == expected and expected != "0", f"active members by profession: chart {chart_total} vs SQL {expected}"
professions = {r["profession"] for r in by_profession}
assert professions == {"dentist", "hygienist"}, professions

counts = ", ".join(f"{name}: {result['rowcount']}" for name, result in rows.items())
print(f"superset: bundle imported; {len(charts)} charts each returned rows ({counts}); source filter matches the table")
