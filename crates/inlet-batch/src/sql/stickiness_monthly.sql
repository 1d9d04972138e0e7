-- Stickiness by calendar month: of the users active in each month whose first day is in
-- [$from, $to], how many were active on exactly N of its days (1..31), and their share.
-- $read_to is the last day of $to's month; the current month counts its days so far.
WITH counted AS (
  SELECT source, CAST(date_trunc('month', activity_date) AS DATE) AS month, user_key, COUNT(*) AS active_days
  FROM daily_user_activity
  WHERE activity_date BETWEEN $from AND $read_to
  GROUP BY 1, 2, 3
),
grouped AS (
  SELECT month, source, CAST(active_days AS INT) AS active_days, COUNT(*) AS users
  FROM counted
  GROUP BY 1, 2, 3
)
SELECT month, source, active_days, users,
  CAST(users AS DOUBLE PRECISION) / CAST(SUM(users) OVER (PARTITION BY month, source) AS DOUBLE PRECISION) AS share
FROM grouped
