-- Sessions starting on the days [$from, $to]. Each day's summary holds every raw key's sessions
-- within that day; stitched keys' sessions and sessions across midnight are merged here when
-- they overlap or lie at most $timeout_micros apart, which splits the merged calls exactly as
-- splitting them one by one would. The days $read_from and $read_to (one day either side) make
-- sessions crossing midnight whole.
WITH stitched AS (
  SELECT s.day, s.source, COALESCE(m.user_id, s.raw_key) AS user_key, s.started, s.ended, s.events
  FROM day_sessions s
  LEFT JOIN identity_map m ON m.anonymous_id = s.raw_key
  WHERE s.day BETWEEN $read_from AND $read_to
),
ordered AS (
  SELECT *,
    MAX(ended) OVER (PARTITION BY source, user_key ORDER BY started, ended
                     ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS reached
  FROM stitched
),
numbered AS (
  SELECT *,
    SUM(CASE WHEN reached IS NULL
              OR CAST(started AS BIGINT) - CAST(reached AS BIGINT) > $timeout_micros
         THEN 1 ELSE 0 END)
      OVER (PARTITION BY source, user_key ORDER BY started, ended
            ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS session_number
  FROM ordered
),
merged AS (
  SELECT source, first_value(day ORDER BY started) AS activity_date,
    MIN(started) AS started, MAX(ended) AS ended, SUM(events) AS events
  FROM numbered
  GROUP BY source, user_key, session_number
)
SELECT activity_date, source, COUNT(*) AS sessions,
  AVG(CAST(CAST(ended AS BIGINT) - CAST(started AS BIGINT) AS DOUBLE) / 1000000.0) AS avg_session_seconds,
  AVG(CASE WHEN events = 1 THEN 1.0 ELSE 0.0 END) AS bounce_rate
FROM merged
WHERE activity_date BETWEEN $from AND $to
GROUP BY activity_date, source
