-- The sessions of the days [$from, $to], stitched: every raw key's sessions of each day under its
-- user key, in the order `sessions.rs` merges them (overlapping or at most the timeout apart).
-- A session ends at midnight in the reporting time zone (as Google's Universal Analytics did),
-- so each day's sessions are its own.
SELECT s.day, s.source, COALESCE(m.user_id, s.raw_key) AS user_key,
  CAST(s.started AS BIGINT) AS started, CAST(s.ended AS BIGINT) AS ended, s.events
FROM day_sessions s
LEFT JOIN identity_map m ON m.anonymous_id = s.raw_key
WHERE s.day BETWEEN $from AND $to
ORDER BY 1, 2, 3, 4, 5
