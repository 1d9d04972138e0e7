-- The calls of one reporting day as stored, duplicates included. Reads only the lake partitions
-- the day overlaps ($first_hour .. $last_hour, as 'YYYY-MM-DDTHH' in UTC) and keeps the calls
-- whose event time lies in [$day_start, $day_end).
-- Event time: the corrected timestamp, or received_at where the gateway partitioned the event by
-- it (a timestamp before $min_time or more than a day after receipt).
-- raw_key: the user id, else the anonymous id; stitching happens later, from the summaries.
SELECT source, message_id, type, event, name, COALESCE(user_id, anonymous_id) AS raw_key,
  user_id IS NOT NULL AS is_user, user_id, anonymous_id, previous_id, event_time, received_at,
  CASE WHEN type = 'page'
    THEN COALESCE(context_page_path, json_text(properties, 'path'), '(not set)') END AS path,
  CASE WHEN type = 'identify' THEN traits END AS traits, violations
FROM (
  SELECT *,
    CASE WHEN "timestamp" > received_at + INTERVAL '1 day' OR "timestamp" < $min_time
      THEN received_at ELSE "timestamp" END AS event_time
  FROM events
  WHERE lake_hours_between(dt, hour, $first_hour, $last_hour)
) AS stored
WHERE event_time >= $day_start AND event_time < $day_end
