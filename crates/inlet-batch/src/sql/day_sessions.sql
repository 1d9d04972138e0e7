-- Each raw key's sessions within the day: runs of activity calls with no gap over
-- $timeout_micros. The sessions step merges them across raw keys stitched together and across
-- midnight, which gives the same sessions as splitting the merged calls.
WITH timed AS (
  SELECT source, raw_key, event_time,
    LAG(event_time) OVER (PARTITION BY source, raw_key ORDER BY event_time) AS previous
  FROM day_events
  WHERE type IN ('track', 'page', 'screen') AND raw_key IS NOT NULL
),
numbered AS (
  SELECT source, raw_key, event_time,
    SUM(CASE WHEN previous IS NULL
              OR CAST(event_time AS BIGINT) - CAST(previous AS BIGINT) > $timeout_micros
         THEN 1 ELSE 0 END)
      OVER (PARTITION BY source, raw_key ORDER BY event_time
            ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS session_number
  FROM timed
)
SELECT source, raw_key, MIN(event_time) AS started, MAX(event_time) AS ended, COUNT(*) AS events
FROM numbered
GROUP BY source, raw_key, session_number
