#!/bin/sh
# Writes deploy/.env for the compose trial: every secret random, the file readable by its owner
# only. An existing deploy/.env is kept (delete it to start over with new secrets, and the
# volumes with it: Garage and PostgreSQL keep the first ones).
set -eu
env_file="$(cd "$(dirname "$0")/.." && pwd)/.env"
if [ -e "$env_file" ]; then
  echo "$env_file exists; keeping it"
  exit 0
fi
hex() { od -An -N"$1" -tx1 /dev/urandom | tr -d ' \n'; }
umask 077
cat > "$env_file" << VARS
GARAGE_KEY_ID=GK$(hex 12)
GARAGE_SECRET=$(hex 32)
POSTGRES_PASSWORD=$(hex 16)
SUPERSET_SECRET_KEY=$(hex 32)
SUPERSET_ADMIN_PASSWORD=$(hex 12)
TRIAL_WRITE_KEY=trial_$(hex 12)
VARS
echo "wrote $env_file"
