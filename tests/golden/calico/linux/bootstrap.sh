#!/bin/bash
# hybrid node bootstrap (control plane or worker): containerd, runc, CNI plugins and
# the Kubernetes binaries from their release pages (each checked before use), then
# kubeadm init (control plane) or kubeadm join (worker).
#
# Runs as the systemd unit hybrid-bootstrap.service: on failure systemd starts it
# again, and every stage leaves a marker, so a rerun (or a reboot, or an image
# baked with `hybrid bake`) continues where the last run stopped. Each stage writes
# one machine-readable line to the serial console, which EC2's console output
# shows and `hybrid status` turns into a boot timeline.
set -euo pipefail

ROLE='worker'
K8S_VERSION='1.35.9'
API_SERVER='10.20.0.10:6443'
CNI='calico'
CNI_VERSION='3.32.4'
NODE_NAME_PLACEHOLDER='__HYBRID_NODE_NAME__'
NODE_IP_PLACEHOLDER='__HYBRID_NODE_IP__'
# `bake` runs only the stages that do not depend on the cluster (hybrid bake).
MODE='node'
IMAGES=('registry.k8s.io/pause:3.10.1' 'registry.k8s.io/kube-proxy:v1.35.9' 'quay.io/calico/node:v3.32.4' 'quay.io/calico/cni:v3.32.4' 'quay.io/calico/kube-controllers:v3.32.4' 'quay.io/calico/typha:v3.32.4' 'quay.io/calico/pod2daemon-flexvol:v3.32.4' 'quay.io/calico/csi:v3.32.4' 'quay.io/calico/node-driver-registrar:v3.32.4')
# Those in a private ECR registry: "region endpoint" of the login each needs.
declare -A ECR_LOGIN=()
STATE=/var/lib/hybrid/stages
WORK=/var/lib/hybrid/downloads

log() { printf '%s hybrid[%s]: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$ROLE" "$*" >&2; }

# One line per stage event: "HYBRID-TIMELINE <UTC time> <stage> <event> [detail]".
timeline() {
  local line
  line="HYBRID-TIMELINE $(date -u +%Y-%m-%dT%H:%M:%S.%3NZ) $*"
  echo "$line" >&2
  { echo "$line" >/dev/console; } 2>/dev/null || true
}

# retry ATTEMPTS DELAY COMMAND...: downloads and API calls fail while the
# network or the API server is still coming up.
retry() {
  local attempts=$1 delay=$2 n=1
  shift 2
  until "$@"; do
    if [ "$n" -ge "$attempts" ]; then
      log "giving up after $n attempts: $*"
      return 1
    fi
    n=$((n + 1))
    sleep "$delay"
  done
}

# stage NAME FUNCTION: runs FUNCTION once (with errexit inside it) and marks
# it done; a stage marked done, by an earlier run or at bake time, is skipped.
stage() {
  local name=$1 rc=0
  shift
  if [ -e "$STATE/$name.done" ]; then
    timeline "$name" skip
    return 0
  fi
  timeline "$name" start
  set +e
  (
    set -e
    "$@"
  )
  rc=$?
  set -e
  if [ "$rc" -ne 0 ]; then
    timeline "$name" fail "exit=$rc"
    return "$rc"
  fi
  mkdir -p "$STATE"
  touch "$STATE/$name.done"
  timeline "$name" "done"
}

# The checksum a download must have, from the way hybrid's version table
# says to check it (sha256:<hex> | sha256-file:<url> | github-asset:<api>#<asset>
# | git-blob:<api>).
expected_sum() {
  local check=$1 api asset
  case "$check" in
    sha256:*) echo "${check#sha256:}" ;;
    sha256-file:*) curl -fsSL --retry 5 "${check#sha256-file:}" | grep -m1 -oE '[0-9a-f]{64}' ;;
    github-asset:*)
      api=${check#github-asset:}
      asset=${api#*#}
      curl -fsSL --retry 5 -H 'Accept: application/vnd.github+json' "${api%%#*}" |
        python3 -c 'import json, sys; print(next(a["digest"].split(":", 1)[1] for a in json.load(sys.stdin)["assets"] if a["name"] == sys.argv[1]))' "$asset"
      ;;
    git-blob:*)
      # The object media type: the only JSON form the contents API serves for
      # files over 1 MB (Calico's CRDs are), with the blob id in "sha"
      # (GitHub REST docs, "Get repository content"; changelog 2022-05-03).
      curl -fsSL --retry 5 -H 'Accept: application/vnd.github.object+json' "${check#git-blob:}" |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["sha"])'
      ;;
    *) return 1 ;;
  esac
}

actual_sum() {
  local check=$1 file=$2
  case "$check" in
    # A git blob id is the SHA-1 of "blob <size>\0" and the content.
    git-blob:*) { printf 'blob %s\0' "$(stat -c %s "$file")"; cat "$file"; } | sha1sum | cut -d' ' -f1 ;;
    *) sha256sum "$file" | cut -d' ' -f1 ;;
  esac
}

# fetch URL DEST CHECK: downloads URL and moves it to DEST only when its
# checksum matches; a mismatch names the file, the expected and the actual sum.
fetch() {
  local url=$1 dest=$2 check=$3 expected actual how
  mkdir -p "$(dirname "$dest")"
  retry 10 10 curl -fsSL --retry 3 -o "$dest.part" "$url"
  expected=$(retry 5 10 expected_sum "$check") || expected=""
  actual=$(actual_sum "$check" "$dest.part")
  if [ -z "$expected" ] || [ "$expected" != "$actual" ]; then
    how=${check%%:*}
    [ -n "$expected" ] || expected="nothing, no sum found via $how"
    log "checksum mismatch for $url: expected $expected, got $actual"
    rm -f "$dest.part"
    return 1
  fi
  mv "$dest.part" "$dest"
}

# IMDSv2 only: instances are launched with HttpTokens=required.
imds() {
  local token
  token=$(curl -sSf -X PUT -H 'X-aws-ec2-metadata-token-ttl-seconds: 300' http://169.254.169.254/latest/api/token)
  curl -sSf -H "X-aws-ec2-metadata-token: ${token}" "http://169.254.169.254/latest/meta-data/$1"
}

install_packages() {
  retry 5 15 dnf install -y -q conntrack-tools socat ethtool iptables-nft iproute-tc tar openssl
}

setup_kernel() {
  modprobe overlay
  modprobe br_netfilter
  sysctl --system >/dev/null
}

install_containerd() {
  fetch 'https://github.com/containerd/containerd/releases/download/v2.3.6/containerd-2.3.6-linux-amd64.tar.gz' "$WORK/containerd.tar.gz" 'sha256-file:https://github.com/containerd/containerd/releases/download/v2.3.6/containerd-2.3.6-linux-amd64.tar.gz.sha256sum'
  tar -C /usr/local -xzf "$WORK/containerd.tar.gz"
  fetch 'https://github.com/opencontainers/runc/releases/download/v1.4.3/runc.amd64' "$WORK/runc" 'sha256:f6ae8efc0fa40079e1475e97cbe9d1bd3f106a28d6af78a11d9f1bd565515e60'
  install -m 0755 "$WORK/runc" /usr/local/sbin/runc
  fetch 'https://github.com/containernetworking/plugins/releases/download/v1.9.1/cni-plugins-linux-amd64-v1.9.1.tgz' "$WORK/cni-plugins.tgz" 'sha256:b98f74a0f8522f0a83867178729c1aa70f2158f90c45a2ca8fa791db1c76b303'
  mkdir -p /opt/cni/bin /etc/cni/net.d /etc/containerd
  tar -C /opt/cni/bin -xzf "$WORK/cni-plugins.tgz"
  install -m 0644 /etc/hybrid/containerd.toml /etc/containerd/config.toml
  install -m 0644 /etc/hybrid/containerd.service /etc/systemd/system/containerd.service
  systemctl daemon-reload
  systemctl enable --now containerd
}

install_kubernetes() {
  fetch 'https://dl.k8s.io/v1.35.9/bin/linux/amd64/kubelet' "$WORK/kubelet" 'sha256-file:https://dl.k8s.io/v1.35.9/bin/linux/amd64/kubelet.sha256'
  fetch 'https://dl.k8s.io/v1.35.9/bin/linux/amd64/kubeadm' "$WORK/kubeadm" 'sha256-file:https://dl.k8s.io/v1.35.9/bin/linux/amd64/kubeadm.sha256'
  install -m 0755 "$WORK/kubelet" "$WORK/kubeadm" /usr/local/bin/
  fetch 'https://github.com/kubernetes-sigs/cri-tools/releases/download/v1.36.0/crictl-v1.36.0-linux-amd64.tar.gz' "$WORK/crictl.tar.gz" 'sha256:83855e114566a8a8c44c548d515670f51de3a5e1da8b2effb59870e2f10c25a3'
  tar -C /usr/local/bin -xzf "$WORK/crictl.tar.gz" crictl
  fetch 'https://artifacts.k8s.io/binaries/cloud-provider-aws/v1.37.0/linux/amd64/ecr-credential-provider-linux-amd64' "$WORK/ecr-credential-provider" 'sha256:842e0fd8159f5ed8df2f38e6521e1e4f0a1ee80cf1e1ac119bbf20bf9c20681c'
  install -D -m 0755 "$WORK/ecr-credential-provider" '/usr/local/lib/hybrid/credential-providers'/ecr-credential-provider
  printf 'runtime-endpoint: unix:///run/containerd/containerd.sock\n' >/etc/crictl.yaml
  install -m 0644 /etc/hybrid/kubelet.service /etc/systemd/system/kubelet.service
  install -d /etc/systemd/system/kubelet.service.d
  install -m 0644 /etc/hybrid/10-kubeadm.conf /etc/systemd/system/kubelet.service.d/10-kubeadm.conf
  systemctl daemon-reload
  systemctl enable kubelet
}

# Images every node pulls on its way to Ready; a baked image has them.
pull_images() {
  local image
  for image in "${IMAGES[@]}"; do
    if [ -n "${ECR_LOGIN[$image]:-}" ]; then
      retry 5 10 pull_private "$image"
    else
      retry 5 10 crictl pull "$image"
    fi
  done
}

# pull_private IMAGE: with a fresh ECR login for its region, which the
# builder's role may ask for; the password is on no line the log keeps.
pull_private() {
  local login password
  read -r -a login <<<"${ECR_LOGIN[$1]}"
  password=$(python3 /etc/hybrid/fetch-secrets.py --ecr-password "${login[0]}" "${login[1]}") || return 1
  # In crictl's environment, not its command line, which ps shows.
  CRICTL_CREDS="AWS:$password" crictl pull "$1"
}

finish_bake() {
  # New instances from this image must run their own user data and get
  # their own identity.
  rm -rf "$WORK"
  cloud-init clean --logs --machine-id
  # A node from this image starts the bootstrap its own user data writes
  # (runcmd enables it), never this bake-mode copy at boot.
  systemctl disable hybrid-bootstrap.service
  printf 'baked=%s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" >/etc/hybrid/baked
  timeline bake "done"
  shutdown -h now
}

write_kubeadm_config() {
  sed -e "s/${NODE_NAME_PLACEHOLDER}/${NODE_NAME}/" -e "s/${NODE_IP_PLACEHOLDER}/${NODE_IP}/" \
    /etc/hybrid/kubeadm.yaml.in >/etc/hybrid/kubeadm.yaml
  chmod 0600 /etc/hybrid/kubeadm.yaml
}

REGION='us-west-2'
SSM_ENDPOINT='https://ssm.us-west-2.amazonaws.com'
TOKEN_PLACEHOLDER='__HYBRID_BOOTSTRAP_TOKEN__'

# put_token FILE: the bootstrap token in FILE goes into the kubeadm config,
# after a check that it is [a-z0-9]{6}.[a-z0-9]{16} and nothing else.
put_token() {
  local token
  token=$(cat "$1")
  if ! [[ $token =~ ^[a-z0-9]{6}\.[a-z0-9]{16}$ ]]; then
    log "unexpected bootstrap token in $1"
    return 1
  fi
  sed -i -e "s/${TOKEN_PLACEHOLDER}/${token}/" /etc/hybrid/kubeadm.yaml
}

# The join token is the only parameter a worker's role may read. It is read
# again on every attempt: an apply that launches nodes stores a fresh one.
JOIN_TOKEN_PARAMETER='/hybrid/golden-calico/join-token'

kubeadm_join() {
  if [ -f /etc/kubernetes/kubelet.conf ]; then
    return 0
  fi
  # Workers boot alongside the control plane: wait (up to an hour) until
  # the API server answers, then join once; a failed join fails the stage,
  # and systemd starts the bootstrap again.
  retry 360 10 curl -ksf -o /dev/null 'https://10.20.0.10:6443/readyz'
  python3 /etc/hybrid/fetch-secrets.py --join-token "$JOIN_TOKEN_PARAMETER" "$REGION" "$SSM_ENDPOINT" /etc/hybrid/token
  put_token /etc/hybrid/token
  rm -f /etc/hybrid/token
  if ! kubeadm join --config /etc/hybrid/kubeadm.yaml; then
    kubeadm reset -f >/dev/null 2>&1 || true
    return 1
  fi
}

main() {
  log "starting ($MODE): Kubernetes $K8S_VERSION, $CNI $CNI_VERSION, API server $API_SERVER"
  timeline bootstrap start "$MODE"
  stage packages install_packages
  stage kernel setup_kernel
  stage containerd install_containerd
  stage kubernetes install_kubernetes
  if [ "$MODE" = bake ]; then
    stage images pull_images
    finish_bake
    return 0
  fi
  NODE_NAME=$(retry 30 2 imds local-hostname)
  NODE_IP=$(retry 30 2 imds local-ipv4)
  # The node name must be the EC2 private DNS name; refuse anything unexpected
  # before it reaches a config file.
  case "$NODE_NAME" in
    '' | *[!a-z0-9.-]*) log "unexpected node name from instance metadata"; return 1 ;;
  esac
  case "$NODE_IP" in
    '' | *[!0-9.]*) log "unexpected node IP from instance metadata"; return 1 ;;
  esac
  write_kubeadm_config
  stage join kubeadm_join
  timeline bootstrap "done"
}

# Tests source the functions without running anything.
if [ "${HYBRID_SOURCE_ONLY:-}" != 1 ]; then
  exec >>/var/log/hybrid-bootstrap.log 2>&1
  main "$@"
fi
