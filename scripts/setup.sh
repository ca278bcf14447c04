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
# Local AWS emulator (EC2 + SSM) for tests and the demo, in the project's venv.
MOTO_VERSION=5.2.5
if ! .venv/bin/python -c "import moto, sys; sys.exit(moto.__version__ != '$MOTO_VERSION')" >/dev/null 2>&1; then
  echo "setup: installing moto $MOTO_VERSION into .venv"
  python3 -m venv .venv
  .venv/bin/pip install -q --disable-pip-version-check "moto[ec2,ssm,server]==$MOTO_VERSION"
fi
echo "setup: moto $(.venv/bin/python -c 'import moto; print(moto.__version__)')"
echo "setup: shellcheck $(shellcheck --version | sed -n 's/^version: //p'), $(cloud-init --version 2>&1 | tail -n1)"
