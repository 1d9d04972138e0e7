-- Weekly retention of the cohort weeks (Mondays) [$from, $to]: the users first seen in the
-- week, retained in week N (0..12) if active on any day of it. A cell exists once its whole
-- week is on or before $last_day. $read_to is the Sunday 12 weeks after $to.
WITH weeks AS (
  SELECT DISTINCT source, user_key, CAST(date_trunc('week', activity_date) AS DATE) AS week,
    CAST(date_trunc('week', first_seen_date) AS DATE) AS cohort_week
  FROM daily_user_activity
  WHERE activity_date BETWEEN $from AND $read_to
),
cohort AS (
  SELECT source, user_key, cohort_week FROM weeks WHERE week = cohort_week AND cohort_week <= $to
),
sizes AS (
  SELECT source, cohort_week, COUNT(*) AS cohort_size FROM cohort GROUP BY source, cohort_week
),
cells AS (
  SELECT c.source, c.cohort_week, CAST((w.week - c.cohort_week) / 7 AS INT) AS week_number,
    COUNT(*) AS retained
  FROM cohort c
  JOIN weeks w ON w.source = c.source AND w.user_key = c.user_key AND w.cohort_week = c.cohort_week
  GROUP BY c.source, c.cohort_week, w.week
)
SELECT s.cohort_week, s.source, o.n AS week_number, s.cohort_size,
  COALESCE(cells.retained, 0) AS retained_users,
  CAST(COALESCE(cells.retained, 0) AS DOUBLE PRECISION) / CAST(s.cohort_size AS DOUBLE PRECISION) AS retention_rate
FROM sizes s
CROSS JOIN offsets o
LEFT JOIN cells ON cells.source = s.source AND cells.cohort_week = s.cohort_week AND cells.week_number = o.n
WHERE o.n <= 12 AND s.cohort_week + o.n * 7 + 6 <= $last_day
