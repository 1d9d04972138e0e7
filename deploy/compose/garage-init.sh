#!/bin/sh
# One-time set-up of the trial's Garage node: layout, the key the gateway uses, the lake bucket.
set -eu
g() { /garage -c /etc/garage.toml "$@"; }
until node="$(g node id -q 2>/dev/null | cut -d@ -f1)" && [ -n "$node" ]; do sleep 1; done
if ! g bucket info inlet-lake > /dev/null 2>&1; then
  g layout assign -z dc1 -c 10G "$node"
  g layout apply --version 1
  g key import --yes -n inlet "$AWS_ACCESS_KEY_ID" "$AWS_SECRET_ACCESS_KEY"
  g bucket create inlet-lake
  g bucket allow --read --write --owner inlet-lake --key inlet
fi
echo "garage ready"
