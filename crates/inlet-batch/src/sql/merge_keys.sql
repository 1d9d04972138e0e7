-- The key state: per source and raw key, when it was first and last seen (any call) and the
-- first and last days it was active. Merged with MIN and MAX, so folding a day in twice
-- changes nothing. `new_keys`: the summaries of the days just read, with their `day`.
SELECT source, raw_key, is_user,
  MIN(first_time) AS first_time, MAX(last_time) AS last_time,
  MIN(first_date) AS first_date, MAX(last_date) AS last_date,
  MIN(first_active_date) AS first_active_date, MAX(last_active_date) AS last_active_date
FROM (
  SELECT source, raw_key, is_user, first_time, last_time, first_date, last_date,
    first_active_date, last_active_date
  FROM keys
  UNION ALL
  SELECT source, raw_key, is_user, first_time, last_time, day AS first_date, day AS last_date,
    CASE WHEN activity_calls > 0 THEN day END AS first_active_date,
    CASE WHEN activity_calls > 0 THEN day END AS last_active_date
  FROM new_keys
) AS folded
GROUP BY source, raw_key, is_user
