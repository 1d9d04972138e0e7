CREATE EXTERNAL SCHEMA IF NOT EXISTS inlet_lake
FROM DATA CATALOG DATABASE 'inlet_lake'
IAM_ROLE 'arn:aws:iam::YOUR-ACCOUNT-ID:role/inlet-spectrum'
CREATE EXTERNAL DATABASE IF NOT EXISTS;

CREATE EXTERNAL TABLE inlet_lake.events (
  "message_id" varchar(65535),
  "type" varchar(65535),
  "event" varchar(65535),
  "name" varchar(65535),
  "category" varchar(65535),
  "user_id" varchar(65535),
  "anonymous_id" varchar(65535),
  "group_id" varchar(65535),
  "previous_id" varchar(65535),
  "timestamp" timestamp,
  "original_timestamp" timestamp,
  "sent_at" timestamp,
  "received_at" timestamp,
  "context_ip" varchar(65535),
  "context_user_agent" varchar(65535),
  "context_locale" varchar(65535),
  "context_timezone" varchar(65535),
  "context_library_name" varchar(65535),
  "context_library_version" varchar(65535),
  "context_page_url" varchar(65535),
  "context_page_path" varchar(65535),
  "context_page_referrer" varchar(65535),
  "context_page_title" varchar(65535),
  "context_page_search" varchar(65535),
  "context_campaign_source" varchar(65535),
  "context_campaign_medium" varchar(65535),
  "context_campaign_name" varchar(65535),
  "context_campaign_term" varchar(65535),
  "context_campaign_content" varchar(65535),
  "context_device_id" varchar(65535),
  "context_device_type" varchar(65535),
  "context_device_manufacturer" varchar(65535),
  "context_device_model" varchar(65535),
  "context_os_name" varchar(65535),
  "context_os_version" varchar(65535),
  "context_app_name" varchar(65535),
  "context_app_version" varchar(65535),
  "context_app_build" varchar(65535),
  "context_screen_width" bigint,
  "context_screen_height" bigint,
  "context" varchar(65535),
  "properties" varchar(65535),
  "traits" varchar(65535),
  "integrations" varchar(65535),
  "extra" varchar(65535),
  "violations" varchar(65535)
)
PARTITIONED BY (source varchar(64), dt date, hour smallint)
STORED AS PARQUET
LOCATION 's3://YOUR-BUCKET/inlet/events/';
