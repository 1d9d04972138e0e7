-- The warehouse engine's sessions of each raw key within the day (the DataFusion engine splits the
-- rows of day_session_calls.sql with the sweep in `sessions.rs`, which gives the same sessions): a
-- call starts a session when it comes more than $timeout µs after the key's previous call. The
-- message id orders calls of the same instant, so both windows see one order.
WITH calls AS (
  SELECT source, raw_key, message_id, epoch_micros(event_time) AS micros
  FROM day_events
  WHERE type IN ('track', 'page', 'screen') AND raw_key IS NOT NULL
),
marked AS (
  SELECT source, raw_key, message_id, micros,
    CASE WHEN micros - LAG(micros) OVER (PARTITION BY source, raw_key ORDER BY micros, message_id) <= $timeout
      THEN 0 ELSE 1 END AS starts
  FROM calls
),
numbered AS (
  SELECT source, raw_key, micros,
    SUM(starts) OVER (PARTITION BY source, raw_key ORDER BY micros, message_id
      ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS session_number
  FROM marked
)
SELECT source, raw_key, MIN(micros) AS started, MAX(micros) AS ended, COUNT(*) AS events
FROM numbered
GROUP BY source, raw_key, session_number
