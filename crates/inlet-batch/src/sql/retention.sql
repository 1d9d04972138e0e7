-- Return-on-day-N retention of the cohorts [$from, $to] (a cohort: the users first seen that
-- day), N in `offsets` (0..30), beside unbounded retention (Amplitude's "on or after day N": the
-- members active on day N or any day after it, up to $last_day). A cell exists once its day is
-- on or before $last_day, the latest day with activity. $read_to is $to + 30.
WITH dua AS (
  SELECT source, user_key, activity_date, first_seen_date
  FROM daily_user_activity
  WHERE activity_date BETWEEN $from AND $read_to
),
cohort AS (
  SELECT source, user_key, activity_date AS cohort_date
  FROM dua
  WHERE first_seen_date = activity_date AND activity_date <= $to
),
sizes AS (
  SELECT source, cohort_date, COUNT(*) AS cohort_size FROM cohort GROUP BY source, cohort_date
),
latest AS (
  SELECT c.source, c.cohort_date,
    LEAST(CAST(f.last_active_date - c.cohort_date AS INT), 30) AS last_offset, COUNT(*) AS members
  FROM cohort c
  JOIN first_seen f ON f.source = c.source AND f.user_key = c.user_key
  GROUP BY 1, 2, 3
),
unbounded AS (
  SELECT l.source, l.cohort_date, o.n AS day_number, SUM(l.members) AS retained
  FROM latest l
  JOIN offsets o ON o.n <= l.last_offset
  GROUP BY 1, 2, 3
),
cells AS (
  SELECT c.source, c.cohort_date, CAST(a.activity_date - c.cohort_date AS INT) AS day_number,
    COUNT(*) AS retained
  FROM cohort c
  JOIN dua a ON a.source = c.source AND a.user_key = c.user_key
  WHERE a.activity_date >= c.cohort_date
  GROUP BY c.source, c.cohort_date, a.activity_date
)
SELECT s.cohort_date, s.source, o.n AS day_number, s.cohort_size,
  COALESCE(cells.retained, 0) AS retained_users,
  CAST(COALESCE(cells.retained, 0) AS DOUBLE PRECISION) / CAST(s.cohort_size AS DOUBLE PRECISION) AS retention_rate,
  COALESCE(u.retained, 0) AS retained_on_or_after,
  CAST(COALESCE(u.retained, 0) AS DOUBLE PRECISION) / CAST(s.cohort_size AS DOUBLE PRECISION) AS unbounded_retention_rate
FROM sizes s
CROSS JOIN offsets o
LEFT JOIN cells ON cells.source = s.source AND cells.cohort_date = s.cohort_date AND cells.day_number = o.n
LEFT JOIN unbounded u ON u.source = s.source AND u.cohort_date = s.cohort_date AND u.day_number = o.n
WHERE o.n <= 30 AND s.cohort_date + o.n <= $last_day
