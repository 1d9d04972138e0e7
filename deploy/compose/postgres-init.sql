-- Databases of the laptop trial: the metrics (Redshift's stand-in), Airflow's and Superset's.
CREATE DATABASE metrics;
CREATE DATABASE airflow;
CREATE DATABASE superset;
