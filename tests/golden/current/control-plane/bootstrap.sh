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

ROLE='control-plane'
K8S_VERSION='1.36.5'
API_SERVER='10.60.0.10:6443'
CNI='flannel'
CNI_VERSION='0.28.9'
NODE_NAME_PLACEHOLDER='__HYBRID_NODE_NAME__'
NODE_IP_PLACEHOLDER='__HYBRID_NODE_IP__'
# `bake` runs only the stages that do not depend on the cluster (hybrid bake).
MODE='node'
IMAGES=('registry.k8s.io/pause:3.10.2' 'registry.k8s.io/kube-proxy:v1.36.5' 'ghcr.io/flannel-io/flannel:v0.28.9' 'ghcr.io/flannel-io/flannel-cni-plugin:v1.9.1-flannel3')
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
  export DEBIAN_FRONTEND=noninteractive
  # On first boot unattended-upgrades holds the dpkg lock for minutes: wait
  # for it rather than failing fast.
  retry 3 30 apt-get -o DPkg::Lock::Timeout=900 update -q
  retry 3 30 apt-get -o DPkg::Lock::Timeout=900 install -y -q --no-install-recommends conntrack socat ethtool ebtables iptables
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
  fetch 'https://dl.k8s.io/v1.36.5/bin/linux/amd64/kubelet' "$WORK/kubelet" 'sha256-file:https://dl.k8s.io/v1.36.5/bin/linux/amd64/kubelet.sha256'
  fetch 'https://dl.k8s.io/v1.36.5/bin/linux/amd64/kubeadm' "$WORK/kubeadm" 'sha256-file:https://dl.k8s.io/v1.36.5/bin/linux/amd64/kubeadm.sha256'
  fetch 'https://dl.k8s.io/v1.36.5/bin/linux/amd64/kubectl' "$WORK/kubectl" 'sha256-file:https://dl.k8s.io/v1.36.5/bin/linux/amd64/kubectl.sha256'
  install -m 0755 "$WORK/kubectl" /usr/local/bin/kubectl
  install -m 0755 "$WORK/kubelet" "$WORK/kubeadm" /usr/local/bin/
  fetch 'https://github.com/kubernetes-sigs/cri-tools/releases/download/v1.36.0/crictl-v1.36.0-linux-amd64.tar.gz' "$WORK/crictl.tar.gz" 'sha256:83855e114566a8a8c44c548d515670f51de3a5e1da8b2effb59870e2f10c25a3'
  tar -C /usr/local/bin -xzf "$WORK/crictl.tar.gz" crictl
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

# The CA (for kubeadm init, so every worker can pin it by hash before boot)
# and kubeadm init's token come from SSM through the instance profile, never
# from user data.
SECRETS_PARAMETER='/hybrid/current/secrets'

# aws-iam-authenticator: the API server's token webhook, so people log in
# with their AWS identity (`hybrid token`) and get what [access] grants
# (the kube-system/aws-auth ConfigMap hybrid writes). The API server reads
# the webhook's kubeconfig when it starts, so all of this precedes
# kubeadm init. Contract: tests/fixtures/upstream/aws-iam-authenticator.json.
AUTHN_CLUSTER_ID='hybrid-current-us-west-2'
AUTHN_USER='hybrid:aws-iam-authenticator'
AUTHN_API_SERVER='https://10.60.0.10:6443'
AUTHN_STATE='/var/aws-iam-authenticator'
AUTHN_WEBHOOK='/etc/kubernetes/aws-iam-authenticator/webhook.kubeconfig'
PKI=/etc/kubernetes/pki

install_authenticator() {
  fetch 'https://github.com/kubernetes-sigs/aws-iam-authenticator/releases/download/v0.7.18/aws-iam-authenticator_0.7.18_linux_amd64' "$WORK/aws-iam-authenticator" 'github-asset:https://api.github.com/repos/kubernetes-sigs/aws-iam-authenticator/releases/tags/v0.7.18#aws-iam-authenticator_0.7.18_linux_amd64'
  install -m 0755 "$WORK/aws-iam-authenticator" /usr/local/bin/aws-iam-authenticator
  install -d -m 0700 "$AUTHN_STATE"
  install -d -m 0755 "$(dirname "$AUTHN_WEBHOOK")"
  # `init` writes its serving certificate and the webhook's kubeconfig into
  # the folder it runs in; a run cut short starts it over.
  if [ ! -s "$AUTHN_WEBHOOK" ]; then
    rm -f "$AUTHN_STATE/cert.pem" "$AUTHN_STATE/key.pem" "$AUTHN_STATE/aws-iam-authenticator.kubeconfig"
    (cd "$AUTHN_STATE" && aws-iam-authenticator init -i "$AUTHN_CLUSTER_ID")
    install -m 0644 "$AUTHN_STATE/aws-iam-authenticator.kubeconfig" "$AUTHN_WEBHOOK.tmp"
    mv "$AUTHN_WEBHOOK.tmp" "$AUTHN_WEBHOOK"
  fi
  if [ ! -s "$AUTHN_STATE/server.kubeconfig" ]; then
    authenticator_identity "$AUTHN_STATE/server.kubeconfig"
  fi
  systemctl daemon-reload
  systemctl enable --now aws-iam-authenticator.service
}

# authenticator_identity FILE: a kubeconfig for the server's own identity
# ($AUTHN_USER, a client certificate from the cluster CA, as kubeadm's own
# kubeconfigs are), which RBAC lets read the aws-auth ConfigMap and nothing
# else (hybrid's Role and RoleBinding of that name). Not admin.conf: the
# webhook does not need to be cluster-admin.
authenticator_identity() {
  local out=$1 dir ca cert key
  dir=$(mktemp -d)
  openssl ecparam -name prime256v1 -genkey -noout -out "$dir/key.pem"
  openssl req -new -key "$dir/key.pem" -subj "/CN=$AUTHN_USER" -out "$dir/csr.pem"
  openssl x509 -req -in "$dir/csr.pem" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -set_serial "0x$(openssl rand -hex 16)" \
    -days 3650 -sha256 -out "$dir/cert.pem" 2>/dev/null
  # Read first: a failure inside the here-document would not stop the stage.
  ca=$(base64 -w0 "$PKI/ca.crt")
  cert=$(base64 -w0 "$dir/cert.pem")
  key=$(base64 -w0 "$dir/key.pem")
  (
    umask 077
    cat >"$out.tmp" <<KUBECONFIG
apiVersion: v1
kind: Config
clusters:
- name: cluster
  cluster:
    server: $AUTHN_API_SERVER
    certificate-authority-data: $ca
users:
- name: aws-iam-authenticator
  user:
    client-certificate-data: $cert
    client-key-data: $key
contexts:
- name: aws-iam-authenticator
  context:
    cluster: cluster
    user: aws-iam-authenticator
current-context: aws-iam-authenticator
KUBECONFIG
  )
  mv "$out.tmp" "$out"
  rm -rf "$dir"
}

fetch_secrets() {
  if [ ! -s /etc/kubernetes/pki/ca.key ] || [ ! -s /etc/hybrid/token ]; then
    python3 /etc/hybrid/fetch-secrets.py "$SECRETS_PARAMETER" "$REGION" "$SSM_ENDPOINT" /etc/kubernetes/pki /etc/hybrid/token
  fi
  put_token /etc/hybrid/token
}

# kubeadm writes admin.conf and the static pod manifests early (its
# kubeconfig and control-plane phases), long before upload-config,
# bootstrap-token and the addons (kubernetes/kubernetes
# cmd/kubeadm/app/cmd/init.go, the phase list): only our own marker says
# init finished. A run that stopped part way is reset and started over,
# with the CA fetched again, since reset empties /etc/kubernetes/pki.
kubeadm_init() {
  if [ ! -e "$STATE/kubeadm-init.ok" ]; then
    if [ -e /etc/kubernetes/admin.conf ] || [ -n "$(ls -A /etc/kubernetes/manifests 2>/dev/null)" ]; then
      log "an earlier kubeadm init did not finish: resetting and starting over"
      kubeadm reset -f
      fetch_secrets
    fi
    log "kubeadm init; API server at $API_SERVER"
    kubeadm init --config /etc/hybrid/kubeadm.yaml --skip-token-print
    mkdir -p "$STATE"
    touch "$STATE/kubeadm-init.ok"
  fi
  KUBECONFIG=/etc/kubernetes/admin.conf retry 60 5 kubectl get --raw /readyz >/dev/null
}

# The stock manifest's net-conf (VNI 1, port 8472) is replaced before the
# first apply, so flanneld never starts with settings Windows cannot join.
install_cni() {
  export KUBECONFIG=/etc/kubernetes/admin.conf
  fetch 'https://github.com/flannel-io/flannel/releases/download/v0.28.9/kube-flannel.yml' /etc/hybrid/kube-flannel.yml 'github-asset:https://api.github.com/repos/flannel-io/flannel/releases/tags/v0.28.9#kube-flannel.yml'
  python3 - /etc/hybrid/kube-flannel.yml /etc/hybrid/cni.yaml >/etc/hybrid/flannel-install.yaml <<'PY'
import sys
docs = open(sys.argv[1]).read().split("\n---")
keep = [d for d in docs if not ("kind: ConfigMap" in d and "name: kube-flannel-cfg" in d)]
print("\n---".join(keep + ["\n" + open(sys.argv[2]).read()]))
PY
  retry 10 10 kubectl apply -f /etc/hybrid/flannel-install.yaml
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
  # Not a stage: the config above is rewritten on every run, so the token
  # goes back in every time (the fetch itself happens once).
  fetch_secrets
  stage authenticator install_authenticator
  stage init kubeadm_init
  stage cni install_cni
  timeline bootstrap "done"
}

# Tests source the functions without running anything.
if [ "${HYBRID_SOURCE_ONLY:-}" != 1 ]; then
  exec >>/var/log/hybrid-bootstrap.log 2>&1
  main "$@"
fi
