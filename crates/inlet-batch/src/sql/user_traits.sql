-- Each identified raw key's traits (with the time each was set), under its stitched user key,
-- for the merge into users.traits.
SELECT COALESCE(m.user_id, t.raw_key) AS user_key, t.source, t.traits
FROM traits t
LEFT JOIN identity_map m ON m.anonymous_id = t.raw_key
WHERE t.is_user OR m.user_id IS NOT NULL
