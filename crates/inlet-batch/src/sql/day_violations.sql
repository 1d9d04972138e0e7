-- The day's tracking plan violations (each call once, duplicates dropped) per source, event,
-- property and kind: the track event's name, or the call type in parentheses. `violations` is the
-- lake's JSON array; the gateway keeps at most 20 per event, so 20 positions are looked at.
SELECT source, event, property, kind, COUNT(*) AS events
FROM (
  SELECT e.source,
    CASE WHEN e.type = 'track' THEN COALESCE(e.event, '') ELSE '(' || e.type || ')' END AS event,
    COALESCE(json_element_text(e.violations, n.i, 'property'), '') AS property,
    json_element_text(e.violations, n.i, 'kind') AS kind
  FROM (SELECT * FROM day_events WHERE violations IS NOT NULL) AS e
  CROSS JOIN (
    SELECT 0 AS i UNION ALL SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3 UNION ALL SELECT 4
    UNION ALL SELECT 5 UNION ALL SELECT 6 UNION ALL SELECT 7 UNION ALL SELECT 8 UNION ALL SELECT 9
    UNION ALL SELECT 10 UNION ALL SELECT 11 UNION ALL SELECT 12 UNION ALL SELECT 13 UNION ALL SELECT 14
    UNION ALL SELECT 15 UNION ALL SELECT 16 UNION ALL SELECT 17 UNION ALL SELECT 18 UNION ALL SELECT 19
  ) AS n
) AS found
WHERE kind IS NOT NULL
GROUP BY 1, 2, 3, 4
