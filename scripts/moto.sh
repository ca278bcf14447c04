#!/usr/bin/env bash
# Starts moto_server (EC2 + SSM emulator) on a free loopback port with the
# project's AMI list, prints its URL, and stops it when the calling shell
# exits if sourced as:   source scripts/moto.sh
# Sets AWS_ENDPOINT_URL and test credentials for the commands that follow.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
port=$("$root/.venv/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
# moto with instances' consoles (tests/support/moto_server.py): files in
# HYBRID_MOTO_CONSOLE_DIR play what an instance wrote to its serial console.
export HYBRID_MOTO_CONSOLE_DIR="${HYBRID_MOTO_CONSOLE_DIR:-$(mktemp -d)}"
MOTO_AMIS_PATH="$root/tests/fixtures/moto/amis.json" MOTO_EC2_ENABLE_INSTANCE_TYPE_VALIDATION=true \
  "$root/.venv/bin/python" "$root/tests/support/moto_server.py" -H 127.0.0.1 -p "$port" >/dev/null 2>"${MOTO_STDERR:-/dev/null}" &
moto_pid=$!
trap 'kill "$moto_pid" 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  if "$root/.venv/bin/python" -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/moto-api/')" >/dev/null 2>&1; then break; fi
  sleep 0.1
done
export AWS_ENDPOINT_URL="http://127.0.0.1:$port"
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_EC2_METADATA_DISABLED=true
unset AWS_PROFILE AWS_SESSION_TOKEN
echo "moto (local EC2 + SSM emulator) listening on $AWS_ENDPOINT_URL"
