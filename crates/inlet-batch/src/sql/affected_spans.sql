-- The spans of days whose per-day tables change because stitching changed: the days of every
-- raw key whose user id changed, and of every raw key of a user key whose first-seen date
-- changed (daily_user_activity carries it on each of the user's days).
WITH changed_links AS (
  SELECT COALESCE(n.anonymous_id, o.anonymous_id) AS raw_key
  FROM identity_map n
  FULL OUTER JOIN previous_identity_map o ON n.anonymous_id = o.anonymous_id
  WHERE NOT (COALESCE(n.user_id = o.user_id, FALSE) OR (n.user_id IS NULL AND o.user_id IS NULL))
),
changed_first_seen AS (
  SELECT COALESCE(n.source, o.source) AS source, COALESCE(n.user_key, o.user_key) AS user_key
  FROM first_seen n
  FULL OUTER JOIN previous_first_seen o ON n.source = o.source AND n.user_key = o.user_key
  WHERE NOT (COALESCE(n.first_seen_date = o.first_seen_date, FALSE) OR (n.first_seen_date IS NULL AND o.first_seen_date IS NULL))
),
stitched AS (
  SELECT k.source, k.raw_key, COALESCE(m.user_id, k.raw_key) AS user_key, k.first_date, k.last_date
  FROM keys k
  LEFT JOIN identity_map m ON m.anonymous_id = k.raw_key
)
SELECT DISTINCT s.first_date, s.last_date
FROM stitched s JOIN changed_links c ON c.raw_key = s.raw_key
UNION
SELECT DISTINCT s.first_date, s.last_date
FROM stitched s JOIN changed_first_seen c ON c.source = s.source AND c.user_key = s.user_key
