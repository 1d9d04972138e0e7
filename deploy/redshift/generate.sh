#!/usr/bin/env bash
# Writes the Redshift DDL in this folder from the binaries themselves, so it cannot drift from
# what they create: `generate.sh` rewrites the files, `generate.sh --check` (run by
# tests/run.sh) fails if a checked-in file differs from what the binaries print now.
# Binaries: $INLET_BIN and $INLET_BATCH_BIN, default `inlet` and `inlet-batch` on the PATH.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
inlet="${INLET_BIN:-inlet}"
batch="${INLET_BATCH_BIN:-inlet-batch}"
# The placeholders a deployment replaces: its bucket and the role Redshift assumes.
lake="s3://YOUR-BUCKET/inlet"
role="arn:aws:iam::YOUR-ACCOUNT-ID:role/inlet-spectrum"
clean() { env -i PATH="$PATH" HOME="$HOME" "$@"; }

render() {
  case "$1" in
    metrics_tables.sql) clean "$batch" ddl --dialect redshift ;;
    spectrum_events.sql) clean INLET_LAKE__URL="$lake" "$inlet" lake ddl --dialect spectrum --iam-role "$role" ;;
    spectrum_partitions_example.sql)
      clean INLET_LAKE__URL="$lake" "$inlet" lake ddl --partitions-only --from 2026-11-20 --source web ;;
  esac
}

status=0
for file in metrics_tables.sql spectrum_events.sql spectrum_partitions_example.sql; do
  if [[ "${1:-}" == "--check" ]]; then
    if ! diff -u "$here/$file" <(render "$file"); then
      echo "deploy/redshift/$file is out of date: run deploy/redshift/generate.sh" >&2
      status=1
    fi
  else
    render "$file" > "$here/$file"
  fi
done
exit "$status"
