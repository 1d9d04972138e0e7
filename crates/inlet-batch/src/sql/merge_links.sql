-- Every (linked id → user id) pair with when it was first and last seen, merged with MIN and
-- MAX. `new_links`: the pairs of the days just read.
SELECT anonymous_id, user_id, MIN(first_time) AS first_time, MAX(last_time) AS last_time
FROM (
  SELECT anonymous_id, user_id, first_time, last_time FROM links
  UNION ALL
  SELECT anonymous_id, user_id, first_time, last_time FROM new_links
) AS folded
GROUP BY anonymous_id, user_id
