-- Lifecycle of each ISO week (Monday) in [$from, $to]: new (first seen that week), returning
-- (active the week before too), resurrecting (not active the week before, first seen earlier),
-- dormant (active the week before, not in the week). $read_from is $from - 7; $read_to is the
-- Sunday of $to's week.
WITH weeks AS (
  SELECT DISTINCT source, user_key, CAST(date_trunc('week', activity_date) AS DATE) AS week,
    CAST(date_trunc('week', first_seen_date) AS DATE) AS first_week
  FROM daily_user_activity
  WHERE activity_date BETWEEN $read_from AND $read_to
),
shifted AS (
  SELECT source, user_key, week, week + 7 AS next_week, first_week FROM weeks
),
pairs AS (
  SELECT COALESCE(c.source, p.source) AS source, COALESCE(c.week, p.next_week) AS week,
    c.user_key IS NOT NULL AS active, p.user_key IS NOT NULL AS active_before, c.first_week
  FROM (SELECT * FROM shifted WHERE week >= $from) c
  FULL OUTER JOIN shifted p ON p.source = c.source AND p.user_key = c.user_key AND p.next_week = c.week
)
SELECT week, source,
  SUM(CASE WHEN active AND first_week = week THEN 1 ELSE 0 END) AS new_users,
  SUM(CASE WHEN active AND first_week < week AND active_before THEN 1 ELSE 0 END) AS returning_users,
  SUM(CASE WHEN active AND first_week < week AND NOT active_before THEN 1 ELSE 0 END) AS resurrecting_users,
  SUM(CASE WHEN NOT active THEN 1 ELSE 0 END) AS dormant_users
FROM pairs
WHERE week BETWEEN $from AND $to
GROUP BY week, source
