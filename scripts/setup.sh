#!/usr/bin/env bash
# Installs everything the tests and the demo need on a fresh Debian machine.
# Idempotent: each step checks before it installs, so re-running is cheap.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v shellcheck >/dev/null 2>&1 || need_apt+=(shellcheck)
command -v cloud-init >/dev/null 2>&1 || need_apt+=(cloud-init)
# hybrid logs talks to nodes with the OpenSSH client; its tests run sshd on loopback.
command -v ssh >/dev/null 2>&1 || need_apt+=(openssh-client)
[ -x /usr/sbin/sshd ] || need_apt+=(openssh-server)
command -v groff >/dev/null 2>&1 || need_apt+=(groff-base)
# The pin check's tests run a real OCI registry (distribution 2.8) on loopback
# behind tests/support/internet.py, which starts it with its own config; the
# package's service is never used.
command -v docker-registry >/dev/null 2>&1 || need_apt+=(docker-registry)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "setup: installing ${need_apt[*]} (Debian packages)"
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  # cloud-init is only used for `cloud-init schema`; keep its services from
  # starting on this machine (docker-registry's neither: see above).
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi
# Local AWS emulator (EC2 + SSM) for tests and the demo, in the project's venv.

# ...and the Kubernetes OpenAPI schemas the strict API emulator
# (tests/support/kube_emulator.py) validates built-in kinds against.
# ...and pyte, a terminal emulator that replays what the live progress
# display leaves on a screen (tests/support/screen.py).
MOTO_VERSION=5.2.5
KUBERNETES_VALIDATE_VERSION=1.37.0
PYTE_VERSION=0.8.2
PYJWT_VERSION=2.15.1
CRYPTOGRAPHY_VERSION=51.0.1
# check-jsonschema carries SchemaStore's GitHub workflow schema, which
# examples/ci/ is validated against offline.
CHECK_JSONSCHEMA_VERSION=0.39.0
if ! .venv/bin/python -c "
import sys, importlib.metadata as m
sys.exit(m.version('moto') != '$MOTO_VERSION' or m.version('kubernetes-validate') != '$KUBERNETES_VALIDATE_VERSION'
         or m.version('pyte') != '$PYTE_VERSION' or m.version('PyJWT') != '$PYJWT_VERSION'
         or m.version('cryptography') != '$CRYPTOGRAPHY_VERSION' or m.version('check-jsonschema') != '$CHECK_JSONSCHEMA_VERSION')" >/dev/null 2>&1; then
  echo "setup: installing moto $MOTO_VERSION, kubernetes-validate $KUBERNETES_VALIDATE_VERSION, pyte $PYTE_VERSION," \
    "PyJWT $PYJWT_VERSION, cryptography $CRYPTOGRAPHY_VERSION and check-jsonschema $CHECK_JSONSCHEMA_VERSION into .venv"
  python3 -m venv .venv
  .venv/bin/pip install -q --disable-pip-version-check "moto[ec2,ssm,server]==$MOTO_VERSION" \
    "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" "pyte==$PYTE_VERSION" aiohttp \
    "PyJWT==$PYJWT_VERSION" "cryptography==$CRYPTOGRAPHY_VERSION" "check-jsonschema==$CHECK_JSONSCHEMA_VERSION"
fi
echo "setup: $(.venv/bin/python -c 'import importlib.metadata as m; print(*(f"{p} {m.version(p)}" for p in ("moto", "kubernetes-validate", "pyte", "aiohttp", "PyJWT", "cryptography", "check-jsonschema")))')"
echo "setup: shellcheck $(shellcheck --version | sed -n 's/^version: //p'), $(cloud-init --version 2>&1 | tail -n1)," \
  "$(docker-registry --version | awk '{print $1, $3}')"
