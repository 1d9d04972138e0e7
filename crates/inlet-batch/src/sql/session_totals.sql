-- The warehouse engine's `sessions` rows of the days [$from, $to] (the DataFusion engine merges the
-- rows of sessions.sql with the sweep in `sessions.rs`): every raw key's sessions of each day under
-- its user key, merged where one starts at most $timeout µs after the latest end before it (so
-- overlapping ones too); then per day and source the count, mean length and share of one-call
-- sessions.
WITH stitched AS (
  SELECT s.day, s.source, COALESCE(m.user_id, s.raw_key) AS user_key, s.raw_key, s.started, s.ended, s.events
  FROM day_sessions s
  LEFT JOIN identity_map m ON m.anonymous_id = s.raw_key
  WHERE s.day BETWEEN $from AND $to
),
marked AS (
  SELECT day, source, user_key, raw_key, started, ended, events,
    CASE WHEN started - MAX(ended) OVER (PARTITION BY day, source, user_key ORDER BY started, ended, raw_key
      ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) <= $timeout THEN 0 ELSE 1 END AS starts
  FROM stitched
),
numbered AS (
  SELECT day, source, user_key, started, ended, events,
    SUM(starts) OVER (PARTITION BY day, source, user_key ORDER BY started, ended, raw_key
      ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS session_number
  FROM marked
),
merged AS (
  SELECT day, source, MAX(ended) - MIN(started) AS micros, SUM(events) AS events
  FROM numbered
  GROUP BY day, source, user_key, session_number
)
SELECT day AS activity_date, source, COUNT(*) AS sessions,
  CAST(SUM(micros) AS DOUBLE PRECISION) / 1000000 / CAST(COUNT(*) AS DOUBLE PRECISION) AS avg_session_seconds,
  CAST(SUM(CASE WHEN events = 1 THEN 1 ELSE 0 END) AS DOUBLE PRECISION) / CAST(COUNT(*) AS DOUBLE PRECISION)
    AS bounce_rate
FROM merged
GROUP BY day, source
