-- The day's activity calls per raw key in time order, which `sessions.rs` splits into each raw
-- key's sessions within the day.
SELECT source, raw_key, CAST(event_time AS BIGINT) AS micros
FROM day_events
WHERE type IN ('track', 'page', 'screen') AND raw_key IS NOT NULL
ORDER BY source, raw_key, micros
