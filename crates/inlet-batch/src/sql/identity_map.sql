-- The user id each linked id maps to: the one it was most recently seen with (a shared device
-- belongs to its latest user). `first_seen`: when that pair was first seen.
SELECT anonymous_id, user_id, first_time AS first_seen
FROM (
  SELECT anonymous_id, user_id, first_time,
    ROW_NUMBER() OVER (PARTITION BY anonymous_id ORDER BY last_time DESC, user_id) AS recency
  FROM links
) AS ranked
WHERE recency = 1
ORDER BY anonymous_id
