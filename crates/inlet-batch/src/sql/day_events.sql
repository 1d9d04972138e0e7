-- The day's calls, each (source, message_id) once: the copy received first. Only the ids stored
-- more than once are sorted, which keeps the common case (no duplicate) a hash lookup.
WITH repeated AS (
  SELECT source, message_id FROM day_read GROUP BY source, message_id HAVING COUNT(*) > 1
),
firsts AS (
  SELECT r.*, ROW_NUMBER() OVER (PARTITION BY r.source, r.message_id ORDER BY r.received_at) AS copy_number
  FROM day_read r
  JOIN repeated d ON d.source = r.source AND d.message_id = r.message_id
)
SELECT source, message_id, type, event, name, raw_key, is_user, user_id, anonymous_id, previous_id,
  event_time, received_at, path, traits, violations
FROM day_read r
WHERE NOT EXISTS (SELECT 1 FROM repeated d WHERE d.source = r.source AND d.message_id = r.message_id)
UNION ALL
SELECT source, message_id, type, event, name, raw_key, is_user, user_id, anonymous_id, previous_id,
  event_time, received_at, path, traits, violations
FROM firsts
WHERE copy_number = 1
