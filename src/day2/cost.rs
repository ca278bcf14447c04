//! An hourly cost estimate for a cluster, from a built-in table of
//! on-demand prices. It is an estimate: prices differ by region and change,
//! Windows licensing is approximated per vCPU, and spot instances are priced
//! at on-demand as an upper bound (and marked as such).

use serde::Serialize;

use crate::model::{ClusterSpec, NodeOs};

/// Which prices the table holds.
pub const PRICES_AS_OF: &str = "AWS us-east-1 on-demand prices as published in 2025 (Windows: the Linux price plus $0.046 per vCPU-hour)";

/// (instance type, vCPUs, Linux on-demand USD per hour).
const PRICES: &[(&str, u32, f64)] = &[
    ("t3.medium", 2, 0.0416),
    ("t3.large", 2, 0.0832),
    ("t3.xlarge", 4, 0.1664),
    ("t3.2xlarge", 8, 0.3328),
    ("m5.large", 2, 0.096),
    ("m5.xlarge", 4, 0.192),
    ("m5.2xlarge", 8, 0.384),
    ("m5.4xlarge", 16, 0.768),
    ("m6i.large", 2, 0.096),
    ("m6i.xlarge", 4, 0.192),
    ("m6i.2xlarge", 8, 0.384),
    ("m6i.4xlarge", 16, 0.768),
    ("m7i.large", 2, 0.1008),
    ("m7i.xlarge", 4, 0.2016),
    ("m7i.2xlarge", 8, 0.4032),
    ("c5.large", 2, 0.085),
    ("c5.xlarge", 4, 0.17),
    ("c5.2xlarge", 8, 0.34),
    ("c6i.large", 2, 0.085),
    ("c6i.xlarge", 4, 0.17),
    ("c6i.2xlarge", 8, 0.34),
    ("c6i.4xlarge", 16, 0.68),
    ("c7i.large", 2, 0.08925),
    ("c7i.xlarge", 4, 0.1785),
    ("c7i.2xlarge", 8, 0.357),
    ("r5.large", 2, 0.126),
    ("r5.xlarge", 4, 0.252),
    ("r6i.large", 2, 0.126),
    ("r6i.xlarge", 4, 0.252),
    ("g4dn.xlarge", 4, 0.526),
    ("g4dn.2xlarge", 8, 0.752),
];

/// Windows Server licence included in on-demand Windows prices, per vCPU-hour.
const WINDOWS_PER_VCPU: f64 = 0.046;
/// gp3 storage, USD per GiB-month, and the hours AWS bills a month as.
const GP3_PER_GB_MONTH: f64 = 0.08;
const HOURS_PER_MONTH: f64 = 730.0;

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Line {
    pub group: String,
    pub instance_type: String,
    pub os: String,
    pub count: u32,
    /// Per instance, compute plus root volume; `None` when the type is not in the table.
    pub hourly_each: Option<f64>,
    pub spot: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Estimate {
    pub lines: Vec<Line>,
    /// Sum over the lines with a known price.
    pub hourly_total: f64,
    pub unknown_types: Vec<String>,
    pub prices_as_of: &'static str,
}

fn hourly(instance_type: &str, os: NodeOs, disk_gb: u32) -> Option<f64> {
    let (_, vcpus, linux) = PRICES.iter().find(|(t, _, _)| *t == instance_type)?;
    let licence = if os.is_windows() { WINDOWS_PER_VCPU * f64::from(*vcpus) } else { 0.0 };
    Some(linux + licence + f64::from(disk_gb) * GP3_PER_GB_MONTH / HOURS_PER_MONTH)
}

/// One running instance of a type, as `hybrid list` sees it (the default
/// root volume of its OS: 50 GiB Linux, 100 GiB Windows).
pub fn instance_hourly(instance_type: &str, windows: bool) -> Option<f64> {
    let (os, disk) = if windows {
        (NodeOs::Windows(crate::model::WindowsVersion::Ws2022), 100)
    } else {
        (NodeOs::Linux(crate::model::LinuxDistro::Ubuntu2404), 50)
    };
    hourly(instance_type, os, disk)
}

pub fn estimate(spec: &ClusterSpec) -> Estimate {
    let cp = &spec.control_plane;
    let mut lines = vec![Line {
        group: "control-plane".into(),
        instance_type: cp.instance_type.clone(),
        os: cp.os.name().into(),
        count: 1,
        hourly_each: hourly(&cp.instance_type, NodeOs::Linux(cp.os), cp.disk_gb),
        spot: false,
    }];
    for p in &spec.pools {
        lines.push(Line {
            group: p.name.clone(),
            instance_type: p.instance_type.clone(),
            os: p.os.name().into(),
            count: p.count,
            hourly_each: hourly(&p.instance_type, p.os, p.disk_gb),
            spot: p.spot,
        });
    }
    let hourly_total = lines.iter().filter_map(|l| l.hourly_each.map(|h| h * f64::from(l.count))).sum();
    let mut unknown_types: Vec<String> = lines.iter().filter(|l| l.hourly_each.is_none()).map(|l| l.instance_type.clone()).collect();
    unknown_types.dedup();
    Estimate { lines, hourly_total, unknown_types, prices_as_of: PRICES_AS_OF }
}

impl Estimate {
    pub fn to_text(&self) -> String {
        let mut out = format!("Estimated cost: ${:.2}/hour", self.hourly_total);
        let spot: u32 = self.lines.iter().filter(|l| l.spot).map(|l| l.count).sum();
        if spot > 0 {
            out.push_str(&format!(" or less ({spot} spot instance(s) counted at on-demand prices)"));
        }
        out.push('\n');
        for l in &self.lines {
            let price = l.hourly_each.map_or("unknown".to_string(), |h| format!("${h:.3}/h each"));
            out.push_str(&format!(
                "  {:<20} {:>3} x {:<12} {:<13} {price}{}\n",
                l.group,
                l.count,
                l.instance_type,
                l.os,
                if l.spot { "  [spot]" } else { "" }
            ));
        }
        if !self.unknown_types.is_empty() {
            out.push_str(&format!("  not in hybrid's price table (left out of the total): {}\n", self.unknown_types.join(", ")));
        }
        out.push_str(&format!("  An estimate from {}, with root volumes; not a quote.\n", self.prices_as_of));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_cluster_estimate() {
        let spec = crate::config::load(include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/clusters/dev.toml"))).spec.unwrap();
        let e = estimate(&spec);
        // t3.large 0.0832 + 2 x c6i.xlarge 0.17 + m6i.xlarge (0.192 + 4 x 0.046 Windows)
        // + root volumes: 50 + 2 x 50 + 100 GiB of gp3.
        let compute = 0.0832 + 2.0 * 0.17 + (0.192 + 4.0 * 0.046);
        let disks = (50.0 + 100.0 + 100.0) * 0.08 / 730.0;
        assert!((e.hourly_total - (compute + disks)).abs() < 1e-9, "{}", e.hourly_total);
        assert!(e.to_text().starts_with("Estimated cost: $0.83/hour\n"), "{}", e.to_text());
        assert!(e.unknown_types.is_empty());
    }

    #[test]
    fn spot_pools_are_marked_and_unknown_types_named() {
        let mut spec = crate::config::load(include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/clusters/dev.toml"))).spec.unwrap();
        spec.pools[0].spot = true;
        spec.pools[1].instance_type = "x9z.huge".into();
        let text = estimate(&spec).to_text();
        assert!(text.contains("[spot]") && text.contains("2 spot instance(s) counted at on-demand prices"), "{text}");
        assert!(text.contains("not in hybrid's price table (left out of the total): x9z.huge"), "{text}");
    }
}
