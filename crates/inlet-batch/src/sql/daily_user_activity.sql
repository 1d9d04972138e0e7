-- The daily active-user list of the days [$from, $to]: the day's raw keys with an activity,
-- stitched, with the user key's first-seen date.
WITH stitched AS (
  SELECT k.day AS activity_date, k.source, COALESCE(m.user_id, k.raw_key) AS user_key,
    k.activity_calls, k.page_views
  FROM day_keys k
  LEFT JOIN identity_map m ON m.anonymous_id = k.raw_key
  WHERE k.day BETWEEN $from AND $to AND k.activity_calls > 0
)
SELECT s.activity_date, s.source, s.user_key, SUM(s.activity_calls) AS events,
  SUM(s.page_views) AS page_views, f.first_seen_date
FROM stitched s
JOIN first_seen f ON f.source = s.source AND f.user_key = s.user_key
GROUP BY s.activity_date, s.source, s.user_key, f.first_seen_date
