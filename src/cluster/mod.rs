//! The Kubernetes side: `objects` (the desired CNI, kube-proxy,
//! RuntimeClass and access objects and the node label/taint rules, pure),
//! `kubeconfig` (kubeconfig documents and merging, pure), `token` (the AWS
//! login token and its ExecCredential, pure) and `converge` (the cluster
//! phase of apply through the `adapters::kube::KubeApi` trait: objects,
//! bootstrap token, Ready nodes, drains).

pub mod converge;
pub mod kubeconfig;
pub mod objects;
pub mod token;
