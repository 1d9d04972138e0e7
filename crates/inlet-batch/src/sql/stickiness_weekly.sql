-- Stickiness by week (Amplitude's stickiness): of the users active in each ISO week whose Monday
-- is in [$from, $to], how many were active on exactly N of its days (1..7), and their share.
-- $read_to is the Sunday of $to's week; the current week counts its days so far.
WITH counted AS (
  SELECT source, CAST(date_trunc('week', activity_date) AS DATE) AS week, user_key, COUNT(*) AS active_days
  FROM daily_user_activity
  WHERE activity_date BETWEEN $from AND $read_to
  GROUP BY 1, 2, 3
),
grouped AS (
  SELECT week, source, CAST(active_days AS INT) AS active_days, COUNT(*) AS users
  FROM counted
  GROUP BY 1, 2, 3
)
SELECT week, source, active_days, users,
  CAST(users AS DOUBLE PRECISION) / CAST(SUM(users) OVER (PARTITION BY week, source) AS DOUBLE PRECISION) AS share
FROM grouped
