-- Distinct users active in each calendar month whose first day is in [$from, $to];
-- $read_to is the last day of the month of $to.
SELECT CAST(date_trunc('month', activity_date) AS DATE) AS month, source, COUNT(DISTINCT user_key) AS mau
FROM daily_user_activity
WHERE activity_date BETWEEN $from AND $read_to
GROUP BY 1, 2
