//! `Cloud` on the AWS SDK (EC2 + SSM). Thin on purpose: each method is one
//! or a few API calls, mapping SDK shapes to hybrid's plain types and SDK
//! errors to `CloudError`. Retries with backoff for throttling, 5xx and
//! dropped connections come from the SDK's standard retry mode, configured
//! in `connect`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_ec2::types as ec2t;
use aws_sdk_ssm::types as ssmt;
use aws_smithy_types::error::display::DisplayErrorContext;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use base64::Engine;

use super::{Cloud, CloudError, CloudResult, LaunchRequest, Launched, LockInfo};
use crate::infra::desired::{
    AmiLookup, ResolvedAmi, SgRule, Source, TAG_CLUSTER, TAG_CNI, TAG_EXPIRES, TAG_KUBERNETES, TAG_POOL, TAG_SLOT, TAG_SPEC_HASH,
    lock_parameter_name, lock_parameter_prefix, parameter_prefix,
};
use crate::infra::inventory::{Found, Instance, Inventory, RouteTable, SecurityGroup};
use crate::model::AmiRef;
use crate::model::net::Ipv4Cidr;

pub struct AwsCloud {
    ec2: aws_sdk_ec2::Client,
    ssm: aws_sdk_ssm::Client,
    calls: Mutex<BTreeMap<&'static str, u64>>,
}

/// Connects with the standard credential chain (env, profiles, SSO, IMDS)
/// in `region`; `endpoint` (or `AWS_ENDPOINT_URL`) points at another
/// EC2/SSM endpoint such as moto.
pub async fn connect(region: &str, endpoint: Option<&str>) -> AwsCloud {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .region(aws_config::Region::new(region.to_string()))
        // Throttling (RequestLimitExceeded), 5xx and dropped connections are
        // retried with exponential backoff and jitter.
        .retry_config(
            RetryConfig::standard()
                .with_max_attempts(10)
                .with_initial_backoff(Duration::from_millis(100))
                .with_max_backoff(Duration::from_secs(10)),
        )
        .timeout_config(
            TimeoutConfig::builder().connect_timeout(Duration::from_secs(5)).operation_attempt_timeout(Duration::from_secs(30)).build(),
        );
    if let Some(url) = endpoint {
        loader = loader.endpoint_url(url);
    }
    let conf = loader.load().await;
    AwsCloud { ec2: aws_sdk_ec2::Client::new(&conf), ssm: aws_sdk_ssm::Client::new(&conf), calls: Mutex::new(BTreeMap::new()) }
}

/// EC2 and SSM share the SDK's error type, so one mapping serves both.
fn err<E: ProvideErrorMetadata + std::error::Error + 'static, R: std::fmt::Debug>(
    operation: &'static str,
    e: aws_sdk_ec2::error::SdkError<E, R>,
) -> CloudError {
    match e.code() {
        Some(code) => CloudError::new(operation, code, e.message().unwrap_or("").to_string()),
        None => CloudError::new(operation, "RequestFailed", DisplayErrorContext(&e).to_string()),
    }
}

/// Success, or an error code that means the call's goal already holds (a
/// retried call whose first attempt went through, a resource already gone).
fn done_unless<O, E: ProvideErrorMetadata + std::error::Error + 'static, R: std::fmt::Debug>(
    operation: &'static str,
    result: Result<O, aws_sdk_ec2::error::SdkError<E, R>>,
    benign: &str,
) -> CloudResult<()> {
    match result {
        Ok(_) => Ok(()),
        Err(e) if e.code() == Some(benign) => Ok(()),
        Err(e) => Err(err(operation, e)),
    }
}

fn resolved(i: &ec2t::Image) -> ResolvedAmi {
    ResolvedAmi {
        id: i.image_id().unwrap_or_default().to_string(),
        name: i.name().unwrap_or("").to_string(),
        // EC2's usual root device when an image does not say.
        root_device: i.root_device_name().unwrap_or("/dev/sda1").to_string(),
    }
}

fn tag_specs(kinds: &[ec2t::ResourceType], tags: &BTreeMap<String, String>) -> Vec<ec2t::TagSpecification> {
    kinds
        .iter()
        .map(|k| {
            let mut b = ec2t::TagSpecification::builder().resource_type(k.clone());
            for (key, value) in tags {
                b = b.tags(ec2t::Tag::builder().key(key).value(value).build());
            }
            b.build()
        })
        .collect()
}

fn cluster_filter(cluster: &str) -> ec2t::Filter {
    ec2t::Filter::builder().name(format!("tag:{TAG_CLUSTER}")).values(cluster).build()
}

fn tag_value(tags: &[ec2t::Tag], key: &str) -> String {
    tags.iter().find(|t| t.key() == Some(key)).and_then(|t| t.value()).unwrap_or_default().to_string()
}

fn permission(rule: &SgRule, group_id: &str) -> ec2t::IpPermission {
    let mut b = ec2t::IpPermission::builder().ip_protocol(&rule.protocol).from_port(rule.from_port).to_port(rule.to_port);
    b = match &rule.source {
        Source::Cluster => {
            b.user_id_group_pairs(ec2t::UserIdGroupPair::builder().group_id(group_id).description(&rule.description).build())
        }
        Source::Cidr(c) => b.ip_ranges(ec2t::IpRange::builder().cidr_ip(c.to_string()).description(&rule.description).build()),
    };
    b.build()
}

/// AWS reports "all ports" for protocols without ports as -1 or nothing.
fn rules_of(group_id: &str, perms: &[ec2t::IpPermission]) -> Vec<SgRule> {
    let mut out = Vec::new();
    for p in perms {
        let protocol = p.ip_protocol().unwrap_or("-1").to_string();
        let (from, to) = (p.from_port().unwrap_or(-1), p.to_port().unwrap_or(-1));
        for pair in p.user_id_group_pairs() {
            let source = if pair.group_id() == Some(group_id) { Source::Cluster } else { continue };
            out.push(SgRule {
                protocol: protocol.clone(),
                from_port: from,
                to_port: to,
                source,
                description: pair.description().unwrap_or("").into(),
            });
        }
        for range in p.ip_ranges() {
            if let Some(c) = range.cidr_ip().and_then(|c| Ipv4Cidr::parse(c).ok()) {
                out.push(SgRule {
                    protocol: protocol.clone(),
                    from_port: from,
                    to_port: to,
                    source: Source::Cidr(c),
                    description: range.description().unwrap_or("").into(),
                });
            }
        }
    }
    out
}

impl AwsCloud {
    fn count(&self, op: &'static str) {
        *self.calls.lock().expect("call counter lock").entry(op).or_default() += 1;
    }

    async fn image(&self, id: &str) -> CloudResult<Option<ResolvedAmi>> {
        self.count("DescribeImages");
        let out = self.ec2.describe_images().image_ids(id).send().await;
        match out {
            Ok(out) => Ok(out.images().first().map(resolved)),
            Err(e) if e.code().is_some_and(|c| c.starts_with("InvalidAMIID")) => Ok(None),
            Err(e) => Err(err("DescribeImages", e)),
        }
    }

    async fn newest_image(&self, owner: Option<&str>, name_pattern: &str) -> CloudResult<Option<ResolvedAmi>> {
        self.count("DescribeImages");
        let mut req = self
            .ec2
            .describe_images()
            .filters(ec2t::Filter::builder().name("name").values(name_pattern).build())
            .filters(ec2t::Filter::builder().name("state").values("available").build());
        if let Some(o) = owner {
            req = req.owners(o);
        }
        let out = req.send().await.map_err(|e| err("DescribeImages", e))?;
        let newest = out
            .images()
            .iter()
            .filter(|i| i.architecture().is_none_or(|a| a.as_str() == "x86_64"))
            .max_by(|a, b| a.creation_date().cmp(&b.creation_date()));
        Ok(newest.map(resolved))
    }

    async fn ssm_get(&self, name: &str) -> CloudResult<Option<String>> {
        self.count("GetParameter");
        match self.ssm.get_parameter().name(name).with_decryption(true).send().await {
            Ok(out) => Ok(out.parameter().and_then(|p| p.value()).map(str::to_string)),
            Err(e) if e.code() == Some("ParameterNotFound") => Ok(None),
            Err(e) => Err(err("GetParameter", e)),
        }
    }
}

impl Cloud for AwsCloud {
    async fn discover(&self, cluster: &str) -> CloudResult<Inventory> {
        let mut inv = Inventory::default();

        self.count("DescribeVpcs");
        let vpcs = self.ec2.describe_vpcs().filters(cluster_filter(cluster)).send().await.map_err(|e| err("DescribeVpcs", e))?;
        inv.vpc = vpcs
            .vpcs()
            .first()
            .map(|v| Found { id: v.vpc_id().unwrap_or_default().into(), cidr: v.cidr_block().and_then(|c| Ipv4Cidr::parse(c).ok()) });

        self.count("DescribeSubnets");
        let subnets = self.ec2.describe_subnets().filters(cluster_filter(cluster)).send().await.map_err(|e| err("DescribeSubnets", e))?;
        inv.subnet = subnets
            .subnets()
            .first()
            .map(|s| Found { id: s.subnet_id().unwrap_or_default().into(), cidr: s.cidr_block().and_then(|c| Ipv4Cidr::parse(c).ok()) });

        self.count("DescribeInternetGateways");
        let igws = self
            .ec2
            .describe_internet_gateways()
            .filters(cluster_filter(cluster))
            .send()
            .await
            .map_err(|e| err("DescribeInternetGateways", e))?;
        inv.internet_gateway = igws.internet_gateways().first().and_then(|g| g.internet_gateway_id()).map(str::to_string);

        if let Some(vpc) = &inv.vpc {
            self.count("DescribeRouteTables");
            let tables = self
                .ec2
                .describe_route_tables()
                .filters(ec2t::Filter::builder().name("vpc-id").values(&vpc.id).build())
                .filters(ec2t::Filter::builder().name("association.main").values("true").build())
                .send()
                .await
                .map_err(|e| err("DescribeRouteTables", e))?;
            inv.route_table = tables.route_tables().first().map(|t| RouteTable {
                id: t.route_table_id().unwrap_or_default().into(),
                default_route_to_igw: t.routes().iter().any(|r| {
                    r.destination_cidr_block() == Some("0.0.0.0/0")
                        && r.gateway_id().is_some_and(|g| Some(g) == inv.internet_gateway.as_deref())
                }),
            });
        }

        self.count("DescribeSecurityGroups");
        let groups = self
            .ec2
            .describe_security_groups()
            .filters(cluster_filter(cluster))
            .send()
            .await
            .map_err(|e| err("DescribeSecurityGroups", e))?;
        inv.expires = groups.security_groups().first().map(|g| tag_value(g.tags(), TAG_EXPIRES)).filter(|e| !e.is_empty());
        inv.security_group = groups.security_groups().first().map(|g| {
            let id = g.group_id().unwrap_or_default().to_string();
            SecurityGroup { rules: rules_of(&id, g.ip_permissions()), id }
        });

        let states = ["pending", "running", "stopping", "stopped"];
        let mut pages = self
            .ec2
            .describe_instances()
            .filters(cluster_filter(cluster))
            .filters(
                ec2t::Filter::builder()
                    .name("instance-state-name")
                    .set_values(Some(states.iter().map(|s| s.to_string()).collect()))
                    .build(),
            )
            .max_results(1000)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            self.count("DescribeInstances");
            let page = page.map_err(|e| err("DescribeInstances", e))?;
            for r in page.reservations() {
                for i in r.instances() {
                    let tags = i.tags();
                    inv.instances.push(Instance {
                        id: i.instance_id().unwrap_or_default().into(),
                        slot: tag_value(tags, TAG_SLOT),
                        group: tag_value(tags, TAG_POOL),
                        spec_hash: tag_value(tags, TAG_SPEC_HASH),
                        kubernetes_version: tag_value(tags, TAG_KUBERNETES),
                        cni: tag_value(tags, TAG_CNI),
                        state: i.state().and_then(|s| s.name()).map_or("unknown".into(), |s| s.as_str().to_string()),
                        instance_type: i.instance_type().map_or(String::new(), |t| t.as_str().to_string()),
                        image_id: i.image_id().unwrap_or_default().into(),
                        private_ip: i.private_ip_address().map(str::to_string),
                        private_dns: i.private_dns_name().map(str::to_string),
                        public_ip: i.public_ip_address().map(str::to_string),
                        launch_time: i
                            .launch_time()
                            .map_or(String::new(), |t| t.fmt(aws_smithy_types::date_time::Format::DateTime).unwrap_or_default()),
                    });
                }
            }
        }

        let prefix = parameter_prefix(cluster);
        let lock = lock_parameter_prefix(cluster);
        let mut pages = self.ssm.get_parameters_by_path().path(&prefix).recursive(true).with_decryption(false).into_paginator().send();
        let mut names = BTreeSet::new();
        while let Some(page) = pages.next().await {
            self.count("GetParametersByPath");
            let page = page.map_err(|e| err("GetParametersByPath", e))?;
            names.extend(page.parameters().iter().filter_map(|p| p.name()).filter(|n| !n.starts_with(&lock)).map(str::to_string));
        }
        inv.parameters = names;
        Ok(inv)
    }

    async fn resolve_ami(&self, lookup: &AmiLookup, over: Option<&AmiRef>) -> CloudResult<ResolvedAmi> {
        match over {
            Some(AmiRef::Id(id)) => self.image(id).await?.ok_or_else(|| {
                CloudError::new("DescribeImages", "InvalidAMIID.NotFound", format!("image {id} does not exist in this region"))
            }),
            Some(AmiRef::Name(pattern)) => self.newest_image(None, pattern).await?.ok_or_else(|| {
                CloudError::new("DescribeImages", "NoMatchingImage", format!("no available x86_64 image is named like {pattern:?}"))
            }),
            None => {
                // The public SSM parameter is the stable, one-call way; it is
                // missing in some regions and in emulators, so fall back to
                // the newest image of the official owner by name.
                if let Some(id) = self.ssm_get(lookup.ssm_parameter).await?
                    && let Some(image) = self.image(&id).await?
                {
                    return Ok(image);
                }
                self.newest_image(Some(lookup.owner), lookup.name_pattern).await?.ok_or_else(|| {
                    CloudError::new(
                        "DescribeImages",
                        "NoMatchingImage",
                        format!("neither {} nor an image named like {} exists", lookup.ssm_parameter, lookup.name_pattern),
                    )
                })
            }
        }
    }

    async fn create_vpc(&self, cidr: Ipv4Cidr, tags: &BTreeMap<String, String>) -> CloudResult<String> {
        self.count("CreateVpc");
        let out = self
            .ec2
            .create_vpc()
            .cidr_block(cidr.to_string())
            .set_tag_specifications(Some(tag_specs(&[ec2t::ResourceType::Vpc], tags)))
            .send()
            .await
            .map_err(|e| err("CreateVpc", e))?;
        let id = out.vpc().and_then(|v| v.vpc_id()).unwrap_or_default().to_string();
        // Private DNS names (the node names) need DNS hostnames on.
        self.count("ModifyVpcAttribute");
        self.ec2
            .modify_vpc_attribute()
            .vpc_id(&id)
            .enable_dns_hostnames(ec2t::AttributeBooleanValue::builder().value(true).build())
            .send()
            .await
            .map_err(|e| err("ModifyVpcAttribute", e))?;
        Ok(id)
    }

    async fn create_subnet(&self, vpc_id: &str, cidr: Ipv4Cidr, tags: &BTreeMap<String, String>) -> CloudResult<String> {
        self.count("CreateSubnet");
        let out = self
            .ec2
            .create_subnet()
            .vpc_id(vpc_id)
            .cidr_block(cidr.to_string())
            .set_tag_specifications(Some(tag_specs(&[ec2t::ResourceType::Subnet], tags)))
            .send()
            .await
            .map_err(|e| err("CreateSubnet", e))?;
        let id = out.subnet().and_then(|s| s.subnet_id()).unwrap_or_default().to_string();
        // Nodes download containerd, kubelet and images at boot.
        self.count("ModifySubnetAttribute");
        self.ec2
            .modify_subnet_attribute()
            .subnet_id(&id)
            .map_public_ip_on_launch(ec2t::AttributeBooleanValue::builder().value(true).build())
            .send()
            .await
            .map_err(|e| err("ModifySubnetAttribute", e))?;
        Ok(id)
    }

    async fn create_internet_gateway(&self, vpc_id: &str, tags: &BTreeMap<String, String>) -> CloudResult<String> {
        self.count("CreateInternetGateway");
        let out = self
            .ec2
            .create_internet_gateway()
            .set_tag_specifications(Some(tag_specs(&[ec2t::ResourceType::InternetGateway], tags)))
            .send()
            .await
            .map_err(|e| err("CreateInternetGateway", e))?;
        let id = out.internet_gateway().and_then(|g| g.internet_gateway_id()).unwrap_or_default().to_string();
        self.attach_internet_gateway(&id, vpc_id).await?;
        Ok(id)
    }

    async fn attach_internet_gateway(&self, igw_id: &str, vpc_id: &str) -> CloudResult<()> {
        self.count("AttachInternetGateway");
        done_unless(
            "AttachInternetGateway",
            self.ec2.attach_internet_gateway().internet_gateway_id(igw_id).vpc_id(vpc_id).send().await,
            "Resource.AlreadyAssociated",
        )
    }

    async fn create_default_route(&self, vpc_id: &str, igw_id: &str) -> CloudResult<()> {
        self.count("DescribeRouteTables");
        let tables = self
            .ec2
            .describe_route_tables()
            .filters(ec2t::Filter::builder().name("vpc-id").values(vpc_id).build())
            .filters(ec2t::Filter::builder().name("association.main").values("true").build())
            .send()
            .await
            .map_err(|e| err("DescribeRouteTables", e))?;
        let table = tables
            .route_tables()
            .first()
            .and_then(|t| t.route_table_id())
            .ok_or_else(|| CloudError::new("DescribeRouteTables", "NoMainRouteTable", format!("{vpc_id} has no main route table")))?;
        self.count("CreateRoute");
        match self.ec2.create_route().route_table_id(table).destination_cidr_block("0.0.0.0/0").gateway_id(igw_id).send().await {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some("RouteAlreadyExists") => {
                self.count("ReplaceRoute");
                self.ec2
                    .replace_route()
                    .route_table_id(table)
                    .destination_cidr_block("0.0.0.0/0")
                    .gateway_id(igw_id)
                    .send()
                    .await
                    .map_err(|e| err("ReplaceRoute", e))?;
                Ok(())
            }
            Err(e) => Err(err("CreateRoute", e)),
        }
    }

    async fn create_security_group(&self, name: &str, vpc_id: &str, tags: &BTreeMap<String, String>) -> CloudResult<String> {
        self.count("CreateSecurityGroup");
        let out = self
            .ec2
            .create_security_group()
            .group_name(name)
            .description("hybrid cluster nodes: only the ports Kubernetes, the CNI and admins need")
            .vpc_id(vpc_id)
            .set_tag_specifications(Some(tag_specs(&[ec2t::ResourceType::SecurityGroup], tags)))
            .send()
            .await
            .map_err(|e| err("CreateSecurityGroup", e))?;
        Ok(out.group_id().unwrap_or_default().to_string())
    }

    async fn authorize_ingress(&self, group_id: &str, rules: &[SgRule]) -> CloudResult<()> {
        if rules.is_empty() {
            return Ok(());
        }
        self.count("AuthorizeSecurityGroupIngress");
        let perms = rules.iter().map(|r| permission(r, group_id)).collect();
        // A retried call whose first attempt went through.
        done_unless(
            "AuthorizeSecurityGroupIngress",
            self.ec2.authorize_security_group_ingress().group_id(group_id).set_ip_permissions(Some(perms)).send().await,
            "InvalidPermission.Duplicate",
        )
    }

    async fn revoke_ingress(&self, group_id: &str, rules: &[SgRule]) -> CloudResult<()> {
        if rules.is_empty() {
            return Ok(());
        }
        self.count("RevokeSecurityGroupIngress");
        let perms = rules.iter().map(|r| permission(r, group_id)).collect();
        done_unless(
            "RevokeSecurityGroupIngress",
            self.ec2.revoke_security_group_ingress().group_id(group_id).set_ip_permissions(Some(perms)).send().await,
            "InvalidPermission.NotFound",
        )
    }

    async fn run_instance(&self, r: &LaunchRequest) -> CloudResult<Launched> {
        self.count("RunInstances");
        let volume = ec2t::EbsBlockDevice::builder()
            .volume_size(r.disk_gb as i32)
            .volume_type(ec2t::VolumeType::Gp3)
            .encrypted(true)
            .delete_on_termination(true)
            .build();
        let mut req = self
            .ec2
            .run_instances()
            .image_id(&r.ami.id)
            .instance_type(ec2t::InstanceType::from(r.instance_type.as_str()))
            .min_count(1)
            .max_count(1)
            .subnet_id(&r.subnet_id)
            .security_group_ids(&r.security_group_id)
            .user_data(base64::engine::general_purpose::STANDARD.encode(&r.user_data))
            .client_token(&r.client_token)
            // IMDSv2 only; hop limit 1 keeps pods in their own network
            // namespace away from the node's credentials.
            .metadata_options(
                ec2t::InstanceMetadataOptionsRequest::builder()
                    .http_tokens(ec2t::HttpTokensState::Required)
                    .http_endpoint(ec2t::InstanceMetadataEndpointState::Enabled)
                    .http_put_response_hop_limit(1)
                    .build(),
            )
            .block_device_mappings(ec2t::BlockDeviceMapping::builder().device_name(&r.ami.root_device).ebs(volume).build())
            .set_tag_specifications(Some(tag_specs(&[ec2t::ResourceType::Instance, ec2t::ResourceType::Volume], &r.tags)));
        if let Some(ip) = r.private_ip {
            req = req.private_ip_address(ip.to_string());
        }
        if let Some(k) = &r.key_name {
            req = req.key_name(k);
        }
        if r.spot {
            req = req.instance_market_options(ec2t::InstanceMarketOptionsRequest::builder().market_type(ec2t::MarketType::Spot).build());
        }
        let out = req.send().await.map_err(|e| err("RunInstances", e))?;
        let first = out.instances().first();
        Ok(Launched {
            id: first.and_then(|i| i.instance_id()).unwrap_or_default().to_string(),
            private_dns: first.and_then(|i| i.private_dns_name()).filter(|d| !d.is_empty()).map(str::to_string),
        })
    }

    async fn terminate_instances(&self, ids: &[String]) -> CloudResult<()> {
        if ids.is_empty() {
            return Ok(());
        }
        self.count("TerminateInstances");
        done_unless(
            "TerminateInstances",
            self.ec2.terminate_instances().set_instance_ids(Some(ids.to_vec())).send().await,
            "InvalidInstanceID.NotFound",
        )
    }

    async fn not_terminated(&self, ids: &[String]) -> CloudResult<Vec<String>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        self.count("DescribeInstances");
        let out = self.ec2.describe_instances().set_instance_ids(Some(ids.to_vec())).send().await;
        let out = match out {
            Ok(o) => o,
            Err(e) if e.code() == Some("InvalidInstanceID.NotFound") => return Ok(Vec::new()),
            Err(e) => return Err(err("DescribeInstances", e)),
        };
        Ok(out
            .reservations()
            .iter()
            .flat_map(|r| r.instances())
            .filter(|i| i.state().and_then(|s| s.name()) != Some(&ec2t::InstanceStateName::Terminated))
            .filter_map(|i| i.instance_id().map(str::to_string))
            .collect())
    }

    async fn delete_security_group(&self, id: &str) -> CloudResult<()> {
        self.count("DeleteSecurityGroup");
        done_unless("DeleteSecurityGroup", self.ec2.delete_security_group().group_id(id).send().await, "InvalidGroup.NotFound")
    }

    async fn delete_internet_gateway(&self, id: &str) -> CloudResult<()> {
        self.count("DescribeInternetGateways");
        let out = self.ec2.describe_internet_gateways().internet_gateway_ids(id).send().await;
        if let Ok(out) = out {
            for g in out.internet_gateways() {
                for a in g.attachments() {
                    if let Some(vpc) = a.vpc_id() {
                        self.count("DetachInternetGateway");
                        match self.ec2.detach_internet_gateway().internet_gateway_id(id).vpc_id(vpc).send().await {
                            Ok(_) => {}
                            Err(e) if e.code() == Some("Gateway.NotAttached") => {}
                            Err(e) => return Err(err("DetachInternetGateway", e)),
                        }
                    }
                }
            }
        }
        self.count("DeleteInternetGateway");
        done_unless(
            "DeleteInternetGateway",
            self.ec2.delete_internet_gateway().internet_gateway_id(id).send().await,
            "InvalidInternetGatewayID.NotFound",
        )
    }

    async fn delete_subnet(&self, id: &str) -> CloudResult<()> {
        self.count("DeleteSubnet");
        done_unless("DeleteSubnet", self.ec2.delete_subnet().subnet_id(id).send().await, "InvalidSubnetID.NotFound")
    }

    async fn delete_vpc(&self, id: &str) -> CloudResult<()> {
        self.count("DeleteVpc");
        done_unless("DeleteVpc", self.ec2.delete_vpc().vpc_id(id).send().await, "InvalidVpcID.NotFound")
    }

    async fn get_parameter(&self, name: &str) -> CloudResult<Option<String>> {
        self.ssm_get(name).await
    }

    async fn create_parameter(&self, name: &str, value: &str, tags: &BTreeMap<String, String>) -> CloudResult<bool> {
        self.count("PutParameter");
        let tags: Vec<ssmt::Tag> =
            tags.iter().map(|(k, v)| ssmt::Tag::builder().key(k).value(v).build().expect("key and value are set")).collect();
        let res = self
            .ssm
            .put_parameter()
            .name(name)
            .value(value)
            .r#type(ssmt::ParameterType::SecureString)
            .overwrite(false)
            .set_tags(Some(tags))
            .send()
            .await;
        match res {
            Ok(_) => Ok(true),
            Err(e) if e.code() == Some("ParameterAlreadyExists") => Ok(false),
            Err(e) => Err(err("PutParameter", e)),
        }
    }

    async fn delete_parameter(&self, name: &str) -> CloudResult<()> {
        self.count("DeleteParameter");
        done_unless("DeleteParameter", self.ssm.delete_parameter().name(name).send().await, "ParameterNotFound")
    }

    async fn locks(&self, cluster: &str) -> CloudResult<Vec<(u64, LockInfo)>> {
        let prefix = lock_parameter_prefix(cluster);
        let mut pages = self.ssm.get_parameters_by_path().path(&prefix).recursive(true).into_paginator().send();
        let mut out = Vec::new();
        while let Some(page) = pages.next().await {
            self.count("GetParametersByPath");
            for p in page.map_err(|e| err("GetParametersByPath", e))?.parameters() {
                let Some(epoch) = p.name().and_then(|n| n.strip_prefix(&prefix)).and_then(|n| n.parse::<u64>().ok()) else { continue };
                let v: serde_json::Value = serde_json::from_str(p.value().unwrap_or_default()).unwrap_or_default();
                let field = |k: &str| v[k].as_str().unwrap_or("unknown").to_string();
                out.push((
                    epoch,
                    LockInfo { owner: field("owner"), run_id: field("run_id"), created: field("created"), expires: field("expires") },
                ));
            }
        }
        out.sort_by_key(|(e, _)| *e);
        Ok(out)
    }

    async fn create_lock(&self, cluster: &str, epoch: u64, lock: &LockInfo) -> CloudResult<bool> {
        let name = lock_parameter_name(cluster, epoch);
        let value =
            serde_json::json!({ "owner": lock.owner, "run_id": lock.run_id, "created": lock.created, "expires": lock.expires }).to_string();
        self.count("PutParameter");
        match self.ssm.put_parameter().name(&name).value(value).r#type(ssmt::ParameterType::String).overwrite(false).send().await {
            Ok(_) => Ok(true),
            Err(e) if e.code() == Some("ParameterAlreadyExists") => Ok(false),
            Err(e) => Err(err("PutParameter", e)),
        }
    }

    async fn delete_lock(&self, cluster: &str, epoch: u64) -> CloudResult<()> {
        self.delete_parameter(&lock_parameter_name(cluster, epoch)).await
    }

    async fn expiring_clusters(&self) -> CloudResult<Vec<(String, String)>> {
        let mut out = Vec::new();
        let mut pages = self
            .ec2
            .describe_security_groups()
            .filters(ec2t::Filter::builder().name("tag-key").values(TAG_EXPIRES).build())
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            self.count("DescribeSecurityGroups");
            for g in page.map_err(|e| err("DescribeSecurityGroups", e))?.security_groups() {
                let (cluster, expires) = (tag_value(g.tags(), TAG_CLUSTER), tag_value(g.tags(), TAG_EXPIRES));
                if !cluster.is_empty() {
                    out.push((cluster, expires));
                }
            }
        }
        out.sort();
        out.dedup();
        Ok(out)
    }

    async fn console_output(&self, id: &str) -> CloudResult<String> {
        self.count("GetConsoleOutput");
        let out = self.ec2.get_console_output().instance_id(id).latest(true).send().await.map_err(|e| err("GetConsoleOutput", e))?;
        let raw = out.output().unwrap_or_default();
        let bytes = base64::engine::general_purpose::STANDARD.decode(raw.trim()).unwrap_or_else(|_| raw.as_bytes().to_vec());
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    fn call_counts(&self) -> BTreeMap<&'static str, u64> {
        self.calls.lock().expect("call counter lock").clone()
    }
}
