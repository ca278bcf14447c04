#!/usr/bin/env bash
# Installs everything the tests and the demo need on a fresh Debian machine.
# Idempotent: each step checks before it installs, so re-running is cheap.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v shellcheck >/dev/null 2>&1 || need_apt+=(shellcheck)
command -v cloud-init >/dev/null 2>&1 || need_apt+=(cloud-init)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "setup: installing ${need_apt[*]} (Debian packages)"
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  # cloud-init is only used for `cloud-init schema`; keep its services from
  # starting on this machine.
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi
echo "setup: shellcheck $(shellcheck --version | sed -n 's/^version: //p'), $(cloud-init --version 2>&1 | tail -n1)"
