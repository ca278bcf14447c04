//! The Kubernetes side: `objects` (the desired CNI, kube-proxy and
//! RuntimeClass objects and the node label/taint rules, pure),
//! `kubeconfig` (admin kubeconfig text, pure) and `converge` (the cluster
//! phase of apply through the `adapters::kube::KubeApi` trait: objects,
//! bootstrap token, Ready nodes, drains).

pub mod converge;
pub mod kubeconfig;
pub mod objects;
