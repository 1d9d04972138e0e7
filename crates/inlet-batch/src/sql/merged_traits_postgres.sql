-- The warehouse engine's merged identify traits on PostgreSQL (the DataFusion engine merges them in
-- `users.rs`, by the same rule): per stitched user key, source and trait, the value set last (event
-- time, then receipt, then the greater value text), left out when that value is null.
WITH settings AS (
  SELECT COALESCE(m.user_id, t.raw_key) AS user_key, t.source, s.key AS name, s.value,
    t.event_micros, t.received_micros
  FROM day_traits t
  LEFT JOIN identity_map m ON m.anonymous_id = t.raw_key
  CROSS JOIN LATERAL jsonb_each(CASE WHEN jsonb_typeof(CAST(t.traits AS JSONB)) = 'object'
    THEN CAST(t.traits AS JSONB) ELSE CAST('{}' AS JSONB) END) AS s
  WHERE t.is_user OR m.user_id IS NOT NULL
),
latest AS (
  SELECT user_key, source, name, value,
    ROW_NUMBER() OVER (PARTITION BY user_key, source, name
      ORDER BY event_micros DESC, received_micros DESC, CAST(value AS TEXT) DESC) AS recency
  FROM settings
),
owners AS (
  SELECT DISTINCT COALESCE(m.user_id, t.raw_key) AS user_key, t.source
  FROM day_traits t
  LEFT JOIN identity_map m ON m.anonymous_id = t.raw_key
  WHERE (t.is_user OR m.user_id IS NOT NULL) AND jsonb_typeof(CAST(t.traits AS JSONB)) = 'object'
)
SELECT o.user_key, o.source,
  CAST(COALESCE(jsonb_object_agg(l.name, l.value) FILTER (WHERE l.name IS NOT NULL), CAST('{}' AS JSONB)) AS TEXT)
    AS traits
FROM owners o
LEFT JOIN latest l ON l.user_key = o.user_key AND l.source = o.source AND l.recency = 1
  AND jsonb_typeof(l.value) <> 'null'
GROUP BY o.user_key, o.source
