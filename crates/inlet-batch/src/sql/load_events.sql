-- The columns of the lake's events the metrics read, for the hours $first_hour .. $last_hour: what
-- the warehouse engine on PostgreSQL copies into its `events` table (Redshift reads the lake itself
-- through Spectrum). Partitions typed as Spectrum types them.
SELECT source, CAST(dt AS DATE) AS dt, CAST(hour AS INT) AS hour, message_id, type, event, name,
  user_id, anonymous_id, previous_id, "timestamp", received_at, context_page_path, properties, traits, violations
FROM events
WHERE lake_hours_between(dt, hour, $first_hour, $last_hour)
