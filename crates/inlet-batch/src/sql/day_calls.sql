-- Calls of the day per raw key, type and name: the track event's name, the page or screen
-- name, '' for identify, group and alias.
SELECT source, raw_key, type,
  CASE WHEN type = 'track' THEN COALESCE(event, '')
       WHEN type IN ('page', 'screen') THEN COALESCE(name, '')
       ELSE '' END AS event,
  COUNT(*) AS calls
FROM day_events
WHERE raw_key IS NOT NULL
GROUP BY 1, 2, 3, 4
