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
by_profession = query(
    f"SELECT string_agg(profession || '=' || users, ',' ORDER BY profession) FROM (SELECT m.profession, count(*) AS users "
    f"FROM {schema}.daily_user_activity a JOIN {schema}.app__members_current m ON m.id = a.user_key "
    f"WHERE a.activity_date = '2026-11-20' GROUP BY m.profession) t")
assert by_profession == "dentist=2,doctor=1,hygienist=2", f"active members by profession: {by_profession!r}"
hashed = query(f"SELECT count(*) FROM {schema}.app__members WHERE length(email) = 64")
assert hashed == "3", f"hashed emails: {hashed!r}"
query(f"DROP SCHEMA {schema} CASCADE")
print("airflow dags test: the members table task copied the product table; active members by profession joined in PostgreSQL")
print(f"airflow dags test: every step ran for 2026-11-20 (Asia/Seoul); PostgreSQL has dau=5, new/returning=2/3, page views=6")
