//! Who may use the cluster with their AWS identity, and as what: the
//! `[access]` table's IAM principals (users, roles, and the roles IAM
//! Identity Center permission sets create) and the cluster roles they get.
//!
//! The API server learns who a caller is from aws-iam-authenticator, which
//! turns the caller's STS identity into a canonical ARN and looks it up in
//! the `kube-system/aws-auth` ConfigMap. Two of its rules shape this module
//! (kubernetes-sigs/aws-iam-authenticator @ 81b1daba, v0.7.18):
//! `pkg/arn/arn.go` canonicalizes `arn:P:sts::A:assumed-role/R/S` to
//! `arn:P:iam::A:role/R` — without the role's path, because STS ARNs carry
//! none — and `pkg/mapper/configmap` compares a mapping's `rolearn`
//! case-insensitively but as written, so a mapping that keeps the path
//! (every Identity Center role has one) never matches. Roles are therefore
//! mapped by their path-less ARN; users keep theirs (their STS identity is
//! the IAM user ARN, path included).

use std::fmt;

/// The cluster's name for aws-iam-authenticator (`-i`, the signed
/// `x-k8s-aws-id` header): a token made for one cluster is refused by every
/// other, also one of the same name in another region.
pub fn cluster_id(cluster: &str, region: &str) -> String {
    format!("hybrid-{cluster}-{region}")
}

/// STS's regional endpoint host, the one aws-iam-authenticator accepts for
/// `region` (pkg/token/token.go `verifyHost`: what the AWS SDK's resolver
/// gives for the region; China's regions have their own domain).
pub fn sts_host(region: &str) -> String {
    let domain = if region.starts_with("cn-") { "amazonaws.com.cn" } else { "amazonaws.com" };
    format!("sts.{region}.{domain}")
}

/// What a principal may do in the cluster.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ClusterRole {
    /// `admins`: the `cluster-admin` ClusterRole.
    Admin,
    /// `editors`: the `edit` ClusterRole, cluster-wide.
    Editor,
    /// `viewers`: the `view` ClusterRole, cluster-wide.
    Viewer,
    /// `roles`: a ClusterRole the team defines (or another built-in one).
    Named(String),
}

impl ClusterRole {
    /// The ClusterRole the group is bound to.
    pub fn cluster_role(&self) -> &str {
        match self {
            ClusterRole::Admin => "cluster-admin",
            ClusterRole::Editor => "edit",
            ClusterRole::Viewer => "view",
            ClusterRole::Named(n) => n,
        }
    }

    /// The Kubernetes group the authenticator puts its principals in; one
    /// ClusterRoleBinding of the same name grants the role to the group.
    pub fn group(&self) -> String {
        match self {
            ClusterRole::Admin => "hybrid:admins".into(),
            ClusterRole::Editor => "hybrid:editors".into(),
            ClusterRole::Viewer => "hybrid:viewers".into(),
            ClusterRole::Named(n) => format!("hybrid:role:{n}"),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PrincipalKind {
    User,
    Role,
}

/// An IAM user or role, parsed from its ARN.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Principal {
    pub kind: PrincipalKind,
    pub partition: String,
    pub account: String,
    /// The path between the resource type and the name: `/` or `/a/b/`.
    pub path: String,
    pub name: String,
}

/// The partitions hybrid's regions live in (aws-iam-authenticator knows
/// more, for regions hybrid does not launch in).
const PARTITIONS: &[&str] = &["aws", "aws-cn", "aws-us-gov"];

/// Why an ARN is not an IAM user or role ARN, with the fix where there is one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArnError {
    pub message: String,
    pub help: String,
}

impl Principal {
    /// Parses `arn:PARTITION:iam::ACCOUNT:user/[PATH/]NAME` or `…:role/…`.
    /// An assumed-role ARN (what `aws sts get-caller-identity` prints) is
    /// refused with the role ARN to write instead: it names one session.
    pub fn parse(arn: &str) -> Result<Principal, ArnError> {
        let fail = |message: String, help: &str| Err(ArnError { message, help: help.to_string() });
        let shape =
            "write arn:aws:iam::123456789012:role/NAME (or user/NAME; a path such as role/aws-reserved/sso.amazonaws.com/NAME is allowed)";
        let parts: Vec<&str> = arn.splitn(6, ':').collect();
        let [prefix, partition, service, region, account, resource] = parts[..] else {
            return fail(format!("`{}` is not an ARN", arn.escape_debug()), shape);
        };
        if prefix != "arn" {
            return fail(format!("`{}` is not an ARN", arn.escape_debug()), shape);
        }
        if !PARTITIONS.contains(&partition) {
            return fail(format!("`{partition}` is not an AWS partition"), "use aws, aws-cn or aws-us-gov");
        }
        if !(account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit())) {
            return fail(format!("`{}` is not a 12-digit AWS account id", account.escape_debug()), shape);
        }
        if service == "sts" {
            if let Some(rest) = resource.strip_prefix("assumed-role/")
                && let Some((role, _session)) = rest.split_once('/')
            {
                return Err(ArnError {
                    message: "an assumed-role ARN names one session of a role, not the role".into(),
                    help: format!("write the role: arn:{partition}:iam::{account}:role/{role} (with its path, if it has one)"),
                });
            }
            return fail(format!("`{}` is not an IAM user or role", arn.escape_debug()), shape);
        }
        if service != "iam" || !region.is_empty() {
            return fail(format!("`{}` is not an IAM ARN (arn:PARTITION:iam::ACCOUNT:…)", arn.escape_debug()), shape);
        }
        let (kind, rest) = if let Some(rest) = resource.strip_prefix("user/") {
            (PrincipalKind::User, rest)
        } else if let Some(rest) = resource.strip_prefix("role/") {
            (PrincipalKind::Role, rest)
        } else {
            return fail(format!("`{}` is not an IAM user or role (group and policy ARNs cannot log in)", arn.escape_debug()), shape);
        };
        let (path, name) = match rest.rsplit_once('/') {
            Some((path, name)) => (format!("/{path}/"), name),
            None => ("/".to_string(), rest),
        };
        // IAM: names are 1-64 (users) or 1-64 (roles) of [\w+=,.@-]; paths
        // are printable ASCII between slashes (IAM API reference, User and Role).
        let name_ok = !name.is_empty() && name.len() <= 64 && name.chars().all(|c| c.is_ascii_alphanumeric() || "_+=,.@-".contains(c));
        if !name_ok {
            return fail(format!("`{}` is not an IAM name (1 to 64 of letters, digits and _+=,.@-)", name.escape_debug()), shape);
        }
        if path.len() > 512 || path.contains("//") || !path.chars().all(|c| ('!'..='~').contains(&c)) {
            return fail(format!("`{}` is not an IAM path", path.escape_debug()), shape);
        }
        Ok(Principal { kind, partition: partition.into(), account: account.into(), path, name: name.into() })
    }

    /// The ARN aws-iam-authenticator compares with: a role's without its
    /// path, a user's as IAM has it.
    pub fn mapping_arn(&self) -> String {
        match self.kind {
            PrincipalKind::Role => format!("arn:{}:iam::{}:role/{}", self.partition, self.account, self.name),
            PrincipalKind::User => format!("arn:{}:iam::{}:user{}{}", self.partition, self.account, self.path, self.name),
        }
    }

    /// The Kubernetes user name (an aws-iam-authenticator template): one
    /// per person, also for everyone behind one role — the session name of
    /// an Identity Center role is the person's user name — as EKS access
    /// entries name them.
    pub fn username_template(&self) -> String {
        match self.kind {
            PrincipalKind::Role => format!("arn:{}:sts::{}:assumed-role/{}/{{{{SessionName}}}}", self.partition, self.account, self.name),
            PrincipalKind::User => self.mapping_arn(),
        }
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            PrincipalKind::User => "user",
            PrincipalKind::Role => "role",
        };
        write!(f, "arn:{}:iam::{}:{kind}{}{}", self.partition, self.account, self.path, self.name)
    }
}

/// One principal with one role (a principal may hold several).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Grant {
    pub principal: Principal,
    pub role: ClusterRole,
}

/// The whole `[access]` table; empty when the file has none.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Access {
    pub grants: Vec<Grant>,
}

impl Access {
    /// Every role that has at least one principal, each once, in order.
    pub fn roles(&self) -> Vec<ClusterRole> {
        let mut roles: Vec<ClusterRole> = self.grants.iter().map(|g| g.role.clone()).collect();
        roles.sort();
        roles.dedup();
        roles
    }

    /// The roles `caller` (an ARN as STS's GetCallerIdentity answers it)
    /// holds, found as aws-iam-authenticator finds them: an assumed role
    /// by its role's path-less ARN, case aside.
    pub fn roles_of(&self, caller: &str) -> Vec<&ClusterRole> {
        let canonical = match caller.split_once(":sts::") {
            Some((prefix, rest)) => {
                match rest.split_once(":assumed-role/").and_then(|(account, r)| Some((account, r.split_once('/')?.0))) {
                    Some((account, role)) => format!("{prefix}:iam::{account}:role/{role}"),
                    None => caller.to_string(),
                }
            }
            None => caller.to_string(),
        };
        self.grants.iter().filter(|g| g.principal.mapping_arn().eq_ignore_ascii_case(&canonical)).map(|g| &g.role).collect()
    }

    /// The groups each principal is in (the principal's mapping ARN → groups),
    /// principals in a stable order.
    pub fn groups_by_principal(&self) -> Vec<(&Principal, Vec<String>)> {
        let mut out: Vec<(&Principal, Vec<String>)> = Vec::new();
        let mut grants: Vec<&Grant> = self.grants.iter().collect();
        grants.sort_by(|a, b| (a.principal.mapping_arn(), &a.role).cmp(&(b.principal.mapping_arn(), &b.role)));
        for g in grants {
            match out.last_mut() {
                Some((p, groups)) if p.mapping_arn() == g.principal.mapping_arn() => groups.push(g.role.group()),
                _ => out.push((&g.principal, vec![g.role.group()])),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_center_roles_are_mapped_without_their_path() {
        let p = Principal::parse(
            "arn:aws:iam::111122223333:role/aws-reserved/sso.amazonaws.com/eu-west-1/AWSReservedSSO_Admin_0123456789abcdef",
        )
        .unwrap();
        assert_eq!(p.kind, PrincipalKind::Role);
        assert_eq!(p.path, "/aws-reserved/sso.amazonaws.com/eu-west-1/");
        assert_eq!(p.mapping_arn(), "arn:aws:iam::111122223333:role/AWSReservedSSO_Admin_0123456789abcdef");
        assert_eq!(p.username_template(), "arn:aws:sts::111122223333:assumed-role/AWSReservedSSO_Admin_0123456789abcdef/{{SessionName}}");
        assert_eq!(
            p.to_string(),
            "arn:aws:iam::111122223333:role/aws-reserved/sso.amazonaws.com/eu-west-1/AWSReservedSSO_Admin_0123456789abcdef"
        );
    }

    #[test]
    fn sts_hosts_follow_the_partition() {
        assert_eq!(sts_host("eu-west-1"), "sts.eu-west-1.amazonaws.com");
        assert_eq!(sts_host("cn-north-1"), "sts.cn-north-1.amazonaws.com.cn");
        assert_eq!(sts_host("us-gov-west-1"), "sts.us-gov-west-1.amazonaws.com");
        assert_eq!(cluster_id("dev", "eu-west-1"), "hybrid-dev-eu-west-1");
    }

    #[test]
    fn users_keep_their_path() {
        let p = Principal::parse("arn:aws-cn:iam::111122223333:user/studio/alice").unwrap();
        assert_eq!(p.mapping_arn(), "arn:aws-cn:iam::111122223333:user/studio/alice");
        assert_eq!(p.username_template(), p.mapping_arn());
        assert_eq!(Principal::parse("arn:aws:iam::111122223333:user/bob").unwrap().path, "/");
    }

    #[test]
    fn wrong_shapes_say_what_to_write() {
        let e = Principal::parse("arn:aws:sts::111122223333:assumed-role/Dev/alice@example.com").unwrap_err();
        assert!(e.help.contains("arn:aws:iam::111122223333:role/Dev"), "{e:?}");
        for bad in [
            "alice",
            "arn:aws:iam::1111:role/x",
            "arn:aws:iam::111122223333:group/devs",
            "arn:aws:iam::111122223333:policy/p",
            "arn:aws:s3:::bucket",
            "arn:aws:iam:us-east-1:111122223333:role/x",
            "arn:azure:iam::111122223333:role/x",
            "arn:aws:iam::111122223333:role/",
            "arn:aws:iam::111122223333:role/a b",
            "arn:aws:iam::111122223333:role/a//b",
        ] {
            assert!(Principal::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_principal_in_two_roles_is_in_both_groups() {
        let alice = Principal::parse("arn:aws:iam::111122223333:user/alice").unwrap();
        let qa = Principal::parse("arn:aws:iam::111122223333:role/QA").unwrap();
        let access = Access {
            grants: vec![
                Grant { principal: qa.clone(), role: ClusterRole::Viewer },
                Grant { principal: alice.clone(), role: ClusterRole::Named("game-deployer".into()) },
                Grant { principal: alice.clone(), role: ClusterRole::Viewer },
            ],
        };
        let groups = access.groups_by_principal();
        assert_eq!(groups.len(), 2);
        assert_eq!(groups[1].0, &alice);
        assert_eq!(groups[1].1, vec!["hybrid:viewers".to_string(), "hybrid:role:game-deployer".to_string()]);
        assert_eq!(access.roles(), vec![ClusterRole::Viewer, ClusterRole::Named("game-deployer".into())]);
        assert_eq!(access.roles_of("arn:aws:sts::111122223333:assumed-role/qa/carol@example.com"), vec![&ClusterRole::Viewer]);
        assert_eq!(access.roles_of("arn:aws:iam::111122223333:user/alice").len(), 2);
        assert!(access.roles_of("arn:aws:iam::111122223333:user/mallory").is_empty());
    }
}
