#!/bin/bash
# hybrid node bootstrap: containerd + kubelet/kubeadm, then kubeadm init (control
# plane) or kubeadm join (worker). Safe to run again: every step checks first.
set -euo pipefail
exec >>/var/log/hybrid-bootstrap.log 2>&1

ROLE='control-plane'
K8S_VERSION='1.34.1'
K8S_REPO_MINOR='v1.34'
API_SERVER='10.50.0.10:6443'
CNI='flannel'
CNI_VERSION='0.28.0'
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
  export DEBIAN_FRONTEND=noninteractive
  retry 10 10 apt-get update -q
  retry 10 10 apt-get install -y -q apt-transport-https ca-certificates curl gpg containerd
  install -d -m 0755 /etc/apt/keyrings
  retry 10 10 curl -fsSL "https://pkgs.k8s.io/core:/stable:/${K8S_REPO_MINOR}/deb/Release.key" -o /tmp/kubernetes-release.key
  gpg --dearmor --batch --yes -o /etc/apt/keyrings/kubernetes-apt-keyring.gpg /tmp/kubernetes-release.key
  echo "deb [signed-by=/etc/apt/keyrings/kubernetes-apt-keyring.gpg] https://pkgs.k8s.io/core:/stable:/${K8S_REPO_MINOR}/deb/ /" >/etc/apt/sources.list.d/kubernetes.list
  retry 10 10 apt-get update -q
  retry 10 10 apt-get install -y -q "kubelet=${K8S_VERSION}-*" "kubeadm=${K8S_VERSION}-*" "kubectl=${K8S_VERSION}-*"
  apt-mark hold kubelet kubeadm kubectl
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

if [ ! -f /etc/kubernetes/admin.conf ]; then
  log "kubeadm init; API server at $API_SERVER"
  kubeadm init --config /etc/hybrid/kubeadm.yaml --skip-token-print
fi
export KUBECONFIG=/etc/kubernetes/admin.conf
retry 60 5 kubectl get --raw /readyz >/dev/null

log "installing $CNI $CNI_VERSION"
retry 10 10 kubectl apply -f 'https://github.com/flannel-io/flannel/releases/download/v0.28.0/kube-flannel.yml'
# Replace the stock net-conf (VNI 1, port 8472) with the Windows-compatible one.
retry 10 10 kubectl apply -f /etc/hybrid/cni.yaml
retry 10 10 kubectl -n kube-flannel rollout restart daemonset/kube-flannel-ds
log "done"
