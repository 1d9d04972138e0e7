-- One row per raw key of the day: its calls, activity calls (track, page, screen), page views
-- and the times of its first and last call.
SELECT source, raw_key, is_user,
  COUNT(*) AS calls,
  SUM(CASE WHEN type IN ('track', 'page', 'screen') THEN 1 ELSE 0 END) AS activity_calls,
  SUM(CASE WHEN type = 'page' THEN 1 ELSE 0 END) AS page_views,
  MIN(event_time) AS first_time,
  MAX(event_time) AS last_time
FROM day_events
WHERE raw_key IS NOT NULL
GROUP BY source, raw_key, is_user
