-- Lifecycle of each day in [$from, $to] (PostHog's lifecycle, by day). The day's active users are
-- new (first seen that day), returning (active the day before too) or resurrecting (not active
-- the day before, first seen earlier); dormant users were active the day before and not on the
-- day. $read_from is $from - 1.
WITH dua AS (
  SELECT source, user_key, activity_date AS day, activity_date + 1 AS next_day,
    first_seen_date
  FROM daily_user_activity
  WHERE activity_date BETWEEN $read_from AND $to
),
pairs AS (
  SELECT COALESCE(c.source, p.source) AS source, COALESCE(c.day, p.next_day) AS day,
    c.user_key IS NOT NULL AS active, p.user_key IS NOT NULL AS active_before, c.first_seen_date
  FROM (SELECT * FROM dua WHERE day >= $from) c
  FULL OUTER JOIN dua p ON p.source = c.source AND p.user_key = c.user_key AND p.next_day = c.day
)
SELECT day AS activity_date, source,
  SUM(CASE WHEN active AND first_seen_date = day THEN 1 ELSE 0 END) AS new_users,
  SUM(CASE WHEN active AND first_seen_date < day AND active_before THEN 1 ELSE 0 END) AS returning_users,
  SUM(CASE WHEN active AND first_seen_date < day AND NOT active_before THEN 1 ELSE 0 END) AS resurrecting_users,
  SUM(CASE WHEN NOT active THEN 1 ELSE 0 END) AS dormant_users
FROM pairs
WHERE day BETWEEN $from AND $to
GROUP BY day, source
