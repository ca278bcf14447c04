#!/bin/bash
# hybrid node bootstrap: containerd + kubelet/kubeadm, then kubeadm init (control
# plane) or kubeadm join (worker). Safe to run again: every step checks first.
set -euo pipefail
exec >>/var/log/hybrid-bootstrap.log 2>&1

ROLE='worker'
K8S_VERSION='1.34.1'
K8S_REPO_MINOR='v1.34'
API_SERVER='10.20.0.10:6443'
CNI='calico'
CNI_VERSION='3.30.3'
NODE_NAME_PLACEHOLDER='__HYBRID_NODE_NAME__'
NODE_IP_PLACEHOLDER='__HYBRID_NODE_IP__'

log() { printf '%s hybrid[%s]: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$ROLE" "$*"; }

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

# IMDSv2 only: instances are launched with HttpTokens=required.
imds() {
  local token
  token=$(curl -sSf -X PUT -H 'X-aws-ec2-metadata-token-ttl-seconds: 300' http://169.254.169.254/latest/api/token)
  curl -sSf -H "X-aws-ec2-metadata-token: ${token}" "http://169.254.169.254/latest/meta-data/$1"
}

log "starting: Kubernetes $K8S_VERSION, $CNI $CNI_VERSION, API server $API_SERVER"
NODE_NAME=$(retry 30 2 imds local-hostname)
NODE_IP=$(retry 30 2 imds local-ipv4)
# The node name must be the EC2 private DNS name; refuse anything unexpected
# before it reaches a config file.
case "$NODE_NAME" in
  '' | *[!a-z0-9.-]*) log "unexpected node name from instance metadata"; exit 1 ;;
esac
case "$NODE_IP" in
  '' | *[!0-9.]*) log "unexpected node IP from instance metadata"; exit 1 ;;
esac

modprobe overlay
modprobe br_netfilter
sysctl --system >/dev/null

if ! command -v kubeadm >/dev/null 2>&1; then
  log "installing containerd and Kubernetes $K8S_VERSION"
  cat >/etc/yum.repos.d/kubernetes.repo <<REPO
[kubernetes]
name=Kubernetes
baseurl=https://pkgs.k8s.io/core:/stable:/${K8S_REPO_MINOR}/rpm/
enabled=1
gpgcheck=1
gpgkey=https://pkgs.k8s.io/core:/stable:/${K8S_REPO_MINOR}/rpm/repodata/repomd.xml.key
REPO
  retry 10 10 dnf install -y -q containerd iproute-tc "kubelet-${K8S_VERSION}" "kubeadm-${K8S_VERSION}" "kubectl-${K8S_VERSION}"
fi

if [ ! -f /etc/containerd/config.toml ] || ! grep -q 'SystemdCgroup = true' /etc/containerd/config.toml; then
  mkdir -p /etc/containerd
  containerd config default >/etc/containerd/config.toml
  # kubelet uses the systemd cgroup driver (KubeletConfiguration); containerd must match.
  sed -i 's/SystemdCgroup = false/SystemdCgroup = true/' /etc/containerd/config.toml
fi
systemctl enable containerd kubelet
systemctl restart containerd

sed -e "s/${NODE_NAME_PLACEHOLDER}/${NODE_NAME}/" -e "s/${NODE_IP_PLACEHOLDER}/${NODE_IP}/" \
  /etc/hybrid/kubeadm.yaml.in >/etc/hybrid/kubeadm.yaml
chmod 0600 /etc/hybrid/kubeadm.yaml

if [ ! -f /etc/kubernetes/kubelet.conf ]; then
  # Workers boot alongside the control plane: keep trying until the API
  # server answers (up to an hour), resetting after each failed attempt.
  attempt=1
  until kubeadm join --config /etc/hybrid/kubeadm.yaml; do
    if [ "$attempt" -ge 120 ]; then
      log "kubeadm join failed $attempt times; giving up"
      exit 1
    fi
    log "join attempt $attempt to $API_SERVER failed; retrying in 30s"
    kubeadm reset -f >/dev/null 2>&1 || true
    attempt=$((attempt + 1))
    sleep 30
  done
fi
log "done"
