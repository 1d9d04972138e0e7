-- Tracking plan violations of the days [$from, $to] per source, event, property and kind: events
-- that had the violation (each call once).
SELECT day AS activity_date, source, event, property, kind, SUM(events) AS events
FROM day_violations
WHERE day BETWEEN $from AND $to
GROUP BY 1, 2, 3, 4, 5
