-- Page views of the days [$from, $to] by path, with distinct stitched visitors.
SELECT p.day AS activity_date, p.source, p.path, SUM(p.page_views) AS page_views,
  COUNT(DISTINCT COALESCE(m.user_id, p.raw_key)) AS unique_visitors
FROM day_pages p
LEFT JOIN identity_map m ON m.anonymous_id = p.raw_key
WHERE p.day BETWEEN $from AND $to
GROUP BY 1, 2, 3
