-- The cohorts whose unbounded ("on or after day N") retention changed although none of their
-- first 30 days did: users whose last active day moved while it was still inside their first
-- 30 days.
SELECT DISTINCT o.first_seen_date
FROM first_seen n
JOIN previous_first_seen o ON n.source = o.source AND n.user_key = o.user_key
WHERE NOT (COALESCE(n.last_active_date = o.last_active_date, FALSE) OR (n.last_active_date IS NULL AND o.last_active_date IS NULL))
  AND o.last_active_date < o.first_seen_date + 30
