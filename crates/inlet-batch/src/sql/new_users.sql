-- Among each day's active users, those first seen that day and the others.
SELECT activity_date, source,
  SUM(CASE WHEN first_seen_date = activity_date THEN 1 ELSE 0 END) AS new_users,
  SUM(CASE WHEN first_seen_date < activity_date THEN 1 ELSE 0 END) AS returning_users
FROM daily_user_activity
WHERE activity_date BETWEEN $from AND $to
GROUP BY activity_date, source
