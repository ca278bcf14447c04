//! The one integration-test binary. Each module covers one area and runs the
//! real `hybrid` binary or the library's public API against real files.

mod moto;
mod sshd;
mod tools;
mod util;

/// The pure core does no I/O.
mod architecture;
/// `hybrid bake` and `hybrid images` against moto: images, resume, cleanup.
mod bake;
/// What a real boot depends on: upstream contracts, verified downloads, stage order.
mod boot;
/// What real AWS does and moto does not (IAM propagation, DependencyViolation,
/// throttling, capacity, eventual consistency), injected by the fault proxy.
mod cloud_faults;
/// AWS state under lost answers and kills at exact calls: one of each, nothing orphaned.
mod crash;
/// apply end to end against moto and the Kubernetes emulator together.
mod e2e;
/// plan / apply / destroy against moto: state, idempotency, faults, kills, locks.
mod ec2;
/// Random and garbage input never panics the loader.
mod fuzz;
/// AWS credentials as the AWS CLI finds them, proxies, and identities in the cluster.
mod identity;
/// The Kubernetes side against the strict API emulator: schemas, defaults, server-side apply.
mod kube;
/// Pinned downloads and images checked before launch, against a loopback internet with a real registry.
mod pins;
/// The cluster CA and its hash, checked against openssl.
mod pki;
/// Bootstrap rendering: golden files, parsers, linters, injection, size.
mod render;
/// Runs that never hurt each other or the user's files: the lock's life, Ctrl-C, files, honest endings.
mod runs;
/// The boot timeline from console outputs: fixtures and the real bash markers.
mod timeline;
/// `hybrid validate`, the fixture table of invalid files, `hybrid schema`.
mod validate;
/// The daily workflow: --set, list, extend, saved plans, the CI example.
mod workflow;
