-- dau, wau and mau of one date, $to (a run's usual key): the distinct users of each window
-- ending on it, counted directly, which for a single date is cheaper than active_users.sql's
-- running sums. $wau_from is $to - 6, $read_from $to - 29; `calendar` holds $to.
SELECT c.day AS activity_date, a.source, a.dau, a.wau, a.mau,
  CAST(a.dau AS DOUBLE PRECISION) / CAST(a.mau AS DOUBLE PRECISION) AS stickiness
FROM calendar c
CROSS JOIN (
  SELECT source,
    COUNT(DISTINCT CASE WHEN activity_date = $to THEN user_key END) AS dau,
    COUNT(DISTINCT CASE WHEN activity_date >= $wau_from THEN user_key END) AS wau,
    COUNT(DISTINCT user_key) AS mau
  FROM daily_user_activity
  WHERE activity_date BETWEEN $read_from AND $to
  GROUP BY source
) a
