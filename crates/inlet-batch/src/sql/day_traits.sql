-- The day's identify traits per raw key, for the merged traits of `users`.
SELECT source, raw_key, is_user, traits, epoch_micros(event_time) AS event_micros,
  epoch_micros(received_at) AS received_micros
FROM day_events
WHERE type = 'identify' AND traits IS NOT NULL AND raw_key IS NOT NULL
