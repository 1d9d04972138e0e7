# Superset for the laptop trial: metadata in the trial's PostgreSQL. Not for production.
import os

SECRET_KEY = os.environ["SUPERSET_SECRET_KEY"]
SQLALCHEMY_DATABASE_URI = "postgresql+psycopg2://postgres:inlet-trial@postgres:5432/superset"
