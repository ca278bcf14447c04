//! The x86_64 EC2 instance families and sizes `validate` knows, so a typo
//! (`c6i.ultramega`) fails in a second instead of after some instances
//! launched. A family missing here is only a warning: `hybrid plan` asks the
//! region (DescribeInstanceTypeOfferings) before anything is created.
//! Source: the EC2 instance type pages (docs.aws.amazon.com/ec2/latest/
//! instancetypes/), general purpose, compute, memory, storage and
//! accelerated families, current and previous generation.

pub const FAMILIES: &[&str] = &[
    "t2", "t3", "t3a", "m4", "m5", "m5a", "m5ad", "m5d", "m5dn", "m5n", "m5zn", "m6a", "m6i", "m6id", "m6idn", "m6in", "m7a", "m7i",
    "m7i-flex", "m8a", "m8i", "c4", "c5", "c5a", "c5ad", "c5d", "c5n", "c6a", "c6i", "c6id", "c6in", "c7a", "c7i", "c7i-flex", "c8a",
    "c8i", "r4", "r5", "r5a", "r5ad", "r5b", "r5d", "r5dn", "r5n", "r6a", "r6i", "r6id", "r6idn", "r6in", "r7a", "r7i", "r7iz", "r8a",
    "r8i", "x1", "x1e", "x2idn", "x2iedn", "x2iezn", "z1d", "i3", "i3en", "i4i", "i7i", "d3", "d3en", "h1", "g4dn", "g5", "g6", "g6e",
    "p3", "p4d", "p5", "inf2",
];

pub const SIZES: &[&str] = &[
    "nano",
    "micro",
    "small",
    "medium",
    "large",
    "xlarge",
    "2xlarge",
    "3xlarge",
    "4xlarge",
    "6xlarge",
    "8xlarge",
    "9xlarge",
    "10xlarge",
    "12xlarge",
    "16xlarge",
    "18xlarge",
    "24xlarge",
    "32xlarge",
    "48xlarge",
    "56xlarge",
    "96xlarge",
    "112xlarge",
    "metal",
    "metal-16xl",
    "metal-24xl",
    "metal-32xl",
    "metal-48xl",
    "metal-96xl",
];
