-- One row per identified user key (a user id, or an anonymous id stitched to one) and source,
-- first and last seen over every call of the raw keys stitched to it.
SELECT COALESCE(m.user_id, k.raw_key) AS user_id, k.source,
  MIN(k.first_time) AS first_seen, MAX(k.last_time) AS last_seen
FROM keys k
LEFT JOIN identity_map m ON m.anonymous_id = k.raw_key
WHERE k.is_user OR m.user_id IS NOT NULL
GROUP BY 1, 2
