-- The day's identify traits per raw key, for the merged traits of `users`.
SELECT source, raw_key, is_user, traits, CAST(event_time AS BIGINT) AS event_micros,
  CAST(received_at AS BIGINT) AS received_micros
FROM day_events
WHERE type = 'identify' AND traits IS NOT NULL AND raw_key IS NOT NULL
