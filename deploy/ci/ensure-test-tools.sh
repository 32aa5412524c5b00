#!/usr/bin/env bash
# Installs the system tools the test suite drives, when missing. Debian/Ubuntu (apt) only.
set -euo pipefail
need=()
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need+=(nginx-light)
# The console's end-to-end tests drive Debian's Chromium through Playwright (no browser download).
command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ] || need+=(chromium)
# `make bench` drives the gateway with wrk.
command -v wrk >/dev/null 2>&1 || need+=(wrk)
# The ticketing adapters' end-to-end tests run a real Request Tracker 5 (SQLite, its standalone
# Plack server) and a real Redmine (SQLite, WEBrick) on loopback; dbconfig-no-thanks keeps the
# packages from creating databases of their own at install time.
[ -x /usr/sbin/rt-setup-database ] && [ -x /usr/share/request-tracker5/libexec/rt-server ] ||
  need+=(dbconfig-no-thanks request-tracker5 rt5-db-sqlite rt5-standalone)
[ -x /usr/share/redmine/bin/rails ] && dpkg -s redmine-sqlite ruby-webrick >/dev/null 2>&1 ||
  need+=(dbconfig-no-thanks redmine redmine-sqlite ruby-webrick)
if [ ${#need[@]} -eq 0 ]; then exit 0; fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "missing system packages: ${need[*]} (install them with your package manager)" >&2
  exit 1
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
