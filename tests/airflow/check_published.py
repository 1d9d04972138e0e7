"""After `airflow dags test`: PostgreSQL holds the day's numbers that
events.py implies (5 daily users on 2026-11-20 in Seoul, 3 of them returning, 6 page views)."""
import subprocess
import sys

pg_url, schema = sys.argv[1:]


def query(sql):
    args = dict(part.split("=", 1) for part in pg_url.split())
    env = {"PGHOST": args["host"], "PGPORT": args["port"], "PGUSER": args["user"], "PGDATABASE": args["dbname"]}
    out = subprocess.run(["psql", "-XAtq", "-c", sql], check=True, capture_output=True, text=True, env=env)
    return out.stdout.strip()

dau = query(f"SELECT dau FROM {schema}.active_users WHERE activity_date = '2026-11-20' AND source = 'web'")
assert dau == "5", f"active_users.dau on 2026-11-20: {dau!r}"
new_returning = query(f"SELECT new_users || ',' || returning_users FROM {schema}.new_users WHERE activity_date = '2026-11-20' AND source = 'web'")
assert new_returning == "2,3", f"new_users on 2026-11-20: {new_returning!r}"
views = query(f"SELECT sum(page_views) FROM {schema}.page_views WHERE activity_date = '2026-11-20' AND source = 'web'")
assert views == "6", f"page views on 2026-11-20: {views!r}"
query(f"DROP SCHEMA {schema} CASCADE")
print(f"airflow dags test: every step ran for 2026-11-20 (Asia/Seoul); PostgreSQL has dau=5, new/returning=2/3, page views=6")
