-- Pairs (anonymous id or aliased previous id → user id) seen on the day, with when.
SELECT anonymous_id, user_id, MIN(event_time) AS first_time, MAX(event_time) AS last_time
FROM (
  SELECT anonymous_id, user_id, event_time FROM day_events
  WHERE user_id IS NOT NULL AND anonymous_id IS NOT NULL AND anonymous_id <> user_id
  UNION ALL
  SELECT previous_id, user_id, event_time FROM day_events
  WHERE type = 'alias' AND user_id IS NOT NULL AND previous_id IS NOT NULL AND previous_id <> user_id
) AS pairs
GROUP BY anonymous_id, user_id
