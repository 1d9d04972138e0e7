-- Each stitched user key's first and last active day per source, over the raw keys that stitch
-- to it.
SELECT k.source, COALESCE(m.user_id, k.raw_key) AS user_key, MIN(k.first_active_date) AS first_seen_date,
  MAX(k.last_active_date) AS last_active_date
FROM keys k
LEFT JOIN identity_map m ON m.anonymous_id = k.raw_key
WHERE k.first_active_date IS NOT NULL
GROUP BY 1, 2
