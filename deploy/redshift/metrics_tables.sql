CREATE SCHEMA IF NOT EXISTS inlet;

CREATE TABLE IF NOT EXISTS inlet.identity_map (
  anonymous_id VARCHAR(1024),
  user_id VARCHAR(1024),
  first_seen TIMESTAMP
) SORTKEY (anonymous_id);

CREATE TABLE IF NOT EXISTS inlet.daily_user_activity (
  activity_date DATE,
  source VARCHAR(1024),
  user_key VARCHAR(1024),
  events BIGINT,
  page_views BIGINT,
  first_seen_date DATE
) SORTKEY (activity_date);

CREATE TABLE IF NOT EXISTS inlet.active_users (
  activity_date DATE,
  source VARCHAR(1024),
  dau BIGINT,
  wau BIGINT,
  mau BIGINT,
  stickiness DOUBLE PRECISION
) SORTKEY (activity_date);

CREATE TABLE IF NOT EXISTS inlet.monthly_active_users (
  month DATE,
  source VARCHAR(1024),
  mau BIGINT
) SORTKEY (month);

CREATE TABLE IF NOT EXISTS inlet.new_users (
  activity_date DATE,
  source VARCHAR(1024),
  new_users BIGINT,
  returning_users BIGINT
) SORTKEY (activity_date);

CREATE TABLE IF NOT EXISTS inlet.retention (
  cohort_date DATE,
  source VARCHAR(1024),
  day_number INTEGER,
  cohort_size BIGINT,
  retained_users BIGINT,
  retention_rate DOUBLE PRECISION,
  retained_on_or_after BIGINT,
  unbounded_retention_rate DOUBLE PRECISION
) SORTKEY (cohort_date);

CREATE TABLE IF NOT EXISTS inlet.retention_weekly (
  cohort_week DATE,
  source VARCHAR(1024),
  week_number INTEGER,
  cohort_size BIGINT,
  retained_users BIGINT,
  retention_rate DOUBLE PRECISION
) SORTKEY (cohort_week);

CREATE TABLE IF NOT EXISTS inlet.lifecycle_daily (
  activity_date DATE,
  source VARCHAR(1024),
  new_users BIGINT,
  returning_users BIGINT,
  resurrecting_users BIGINT,
  dormant_users BIGINT
) SORTKEY (activity_date);

CREATE TABLE IF NOT EXISTS inlet.lifecycle_weekly (
  week DATE,
  source VARCHAR(1024),
  new_users BIGINT,
  returning_users BIGINT,
  resurrecting_users BIGINT,
  dormant_users BIGINT
) SORTKEY (week);

CREATE TABLE IF NOT EXISTS inlet.stickiness_weekly (
  week DATE,
  source VARCHAR(1024),
  active_days INTEGER,
  users BIGINT,
  share DOUBLE PRECISION
) SORTKEY (week);

CREATE TABLE IF NOT EXISTS inlet.stickiness_monthly (
  month DATE,
  source VARCHAR(1024),
  active_days INTEGER,
  users BIGINT,
  share DOUBLE PRECISION
) SORTKEY (month);

CREATE TABLE IF NOT EXISTS inlet.page_views (
  activity_date DATE,
  source VARCHAR(1024),
  path VARCHAR(4096),
  page_views BIGINT,
  unique_visitors BIGINT
) SORTKEY (activity_date);

CREATE TABLE IF NOT EXISTS inlet.sessions (
  activity_date DATE,
  source VARCHAR(1024),
  sessions BIGINT,
  avg_session_seconds DOUBLE PRECISION,
  bounce_rate DOUBLE PRECISION
) SORTKEY (activity_date);

CREATE TABLE IF NOT EXISTS inlet.event_counts (
  activity_date DATE,
  source VARCHAR(1024),
  type VARCHAR(1024),
  event VARCHAR(4096),
  events BIGINT,
  users BIGINT
) SORTKEY (activity_date);

CREATE TABLE IF NOT EXISTS inlet.tracking_plan_violations (
  activity_date DATE,
  source VARCHAR(1024),
  event VARCHAR(4096),
  property VARCHAR(1024),
  kind VARCHAR(1024),
  events BIGINT
) SORTKEY (activity_date);

CREATE TABLE IF NOT EXISTS inlet.users (
  user_id VARCHAR(1024),
  source VARCHAR(1024),
  first_seen TIMESTAMP,
  last_seen TIMESTAMP,
  traits VARCHAR(65535),
  email VARCHAR(1024),
  name VARCHAR(1024),
  first_name VARCHAR(1024),
  last_name VARCHAR(1024),
  profession VARCHAR(1024),
  specialty VARCHAR(1024),
  created_at VARCHAR(1024)
) SORTKEY (user_id);

