-- Page views of the day per raw key and path.
SELECT source, raw_key, path, COUNT(*) AS page_views
FROM day_events
WHERE type = 'page' AND raw_key IS NOT NULL
GROUP BY source, raw_key, path
