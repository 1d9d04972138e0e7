-- The warehouse engine's merged identify traits on Redshift, by the rule of
-- merged_traits_postgres.sql: traits parsed to SUPER and unpivoted to one row per trait, the
-- latest setting kept, and the object written back as JSON text with LISTAGG (Redshift has no
-- aggregate that builds an object).
WITH parsed AS (
  SELECT source, raw_key, is_user, event_micros, received_micros, JSON_PARSE(traits) AS traits
  FROM day_traits
  WHERE IS_VALID_JSON(traits)
),
settings AS (
  SELECT p.source, p.raw_key, p.is_user, CAST(name AS VARCHAR(1024)) AS name, JSON_SERIALIZE(value) AS value,
    p.event_micros, p.received_micros
  FROM parsed AS p, UNPIVOT p.traits AS value AT name
),
latest AS (
  SELECT COALESCE(m.user_id, s.raw_key) AS user_key, s.source, s.name, s.value,
    ROW_NUMBER() OVER (PARTITION BY COALESCE(m.user_id, s.raw_key), s.source, s.name
      ORDER BY s.event_micros DESC, s.received_micros DESC, s.value DESC) AS recency
  FROM settings s
  LEFT JOIN identity_map m ON m.anonymous_id = s.raw_key
  WHERE s.is_user OR m.user_id IS NOT NULL
),
owners AS (
  SELECT DISTINCT COALESCE(m.user_id, p.raw_key) AS user_key, p.source
  FROM parsed p
  LEFT JOIN identity_map m ON m.anonymous_id = p.raw_key
  WHERE (p.is_user OR m.user_id IS NOT NULL) AND IS_OBJECT(p.traits)
)
SELECT o.user_key, o.source,
  '{' || COALESCE(LISTAGG(CASE WHEN l.value <> 'null' THEN JSON_SERIALIZE(CAST(l.name AS SUPER)) || ':' || l.value END, ',')
    WITHIN GROUP (ORDER BY l.name), '') || '}' AS traits
FROM owners o
LEFT JOIN latest l ON l.user_key = o.user_key AND l.source = o.source AND l.recency = 1
GROUP BY o.user_key, o.source
