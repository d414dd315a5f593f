#!/usr/bin/env bash
# apt-get install PACKAGE... with no service started: Debian's prometheus and
# prometheus-node-exporter would otherwise start listening on 0.0.0.0 where an
# init system runs them. A policy-rc.d that exits 101 tells invoke-rc.d "not
# now"; whatever policy-rc.d was there before is put back afterwards. Needs root.
set -euo pipefail
[ "$#" -gt 0 ] || exit 0
policy=/usr/sbin/policy-rc.d
saved=""
if [ -e "$policy" ]; then
  saved=$(mktemp)
  cp -p "$policy" "$saved"
fi
restore() {
  if [ -n "$saved" ]; then
    mv -f "$saved" "$policy"
  else
    rm -f "$policy"
  fi
}
trap restore EXIT
printf '#!/bin/sh\n# nixmox setup: start no service while installing test peers.\nexit 101\n' >"$policy"
chmod 0755 "$policy"
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
