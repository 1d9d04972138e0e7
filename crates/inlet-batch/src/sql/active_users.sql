-- dau, wau and mau of the dates [$from, $to]. A user active on day d counts toward the WAU of
-- d .. d+6 and the MAU of d .. d+29, up to their next active day (which takes over), so each
-- row of daily_user_activity adds one where its windows start and takes one away where they
-- end, and a running sum per source counts the users. $read_from is $from - 29.
WITH dua AS (
  SELECT source, user_key, activity_date
  FROM daily_user_activity
  WHERE activity_date BETWEEN $read_from AND $to
),
spans AS (
  SELECT source, activity_date,
    LEAD(activity_date) OVER (PARTITION BY source, user_key ORDER BY activity_date) AS next_date
  FROM dua
),
changes AS (
  SELECT source, activity_date AS day, 1 AS dau, 1 AS wau, 1 AS mau FROM spans
  UNION ALL
  SELECT source, activity_date + 1, -1, 0, 0 FROM spans
  UNION ALL
  SELECT source, LEAST(COALESCE(next_date, activity_date + 7), activity_date + 7),
    0, -1, 0
  FROM spans
  UNION ALL
  SELECT source, LEAST(COALESCE(next_date, activity_date + 30), activity_date + 30),
    0, 0, -1
  FROM spans
  UNION ALL
  SELECT s.source, c.day, 0, 0, 0
  FROM (SELECT DISTINCT source FROM dua) s CROSS JOIN calendar c
  WHERE c.day BETWEEN $from AND $to
),
daily AS (
  SELECT source, day, SUM(dau) AS dau, SUM(wau) AS wau, SUM(mau) AS mau
  FROM changes
  GROUP BY source, day
),
running AS (
  SELECT source, day,
    SUM(dau) OVER (PARTITION BY source ORDER BY day ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS dau,
    SUM(wau) OVER (PARTITION BY source ORDER BY day ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS wau,
    SUM(mau) OVER (PARTITION BY source ORDER BY day ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS mau
  FROM daily
)
SELECT day AS activity_date, source, dau, wau, mau,
  CAST(dau AS DOUBLE PRECISION) / CAST(mau AS DOUBLE PRECISION) AS stickiness
FROM running
WHERE day BETWEEN $from AND $to AND mau > 0
