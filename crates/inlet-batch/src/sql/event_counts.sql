-- Calls of the days [$from, $to] by type and name, with distinct stitched users.
SELECT c.day AS activity_date, c.source, c.type, c.event, SUM(c.calls) AS events,
  COUNT(DISTINCT COALESCE(m.user_id, c.raw_key)) AS users
FROM day_calls c
LEFT JOIN identity_map m ON m.anonymous_id = c.raw_key
WHERE c.day BETWEEN $from AND $to
GROUP BY 1, 2, 3, 4
