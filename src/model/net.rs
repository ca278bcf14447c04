//! IPv4 CIDR blocks: strict parsing, containment and overlap. Pure and small
//! on purpose; hybrid only needs what validation and planning ask.

use std::fmt;
use std::net::Ipv4Addr;

/// A network `a.b.c.d/n` whose host bits are zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ipv4Cidr {
    addr: u32,
    prefix: u8,
}

/// Why a string is not a CIDR block; the message is shown to users.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CidrError {
    Malformed,
    HostBitsSet { network: Ipv4Cidr },
}

impl fmt::Display for CidrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Malformed => f.write_str("is not an IPv4 CIDR block like 10.0.0.0/16"),
            Self::HostBitsSet { network } => {
                write!(f, "has host bits set; the network address is {network}")
            }
        }
    }
}

impl Ipv4Cidr {
    pub fn parse(s: &str) -> Result<Self, CidrError> {
        let (ip, prefix) = s.split_once('/').ok_or(CidrError::Malformed)?;
        // Ipv4Addr's parser already rejects leading zeros and out-of-range octets.
        let ip: Ipv4Addr = ip.parse().map_err(|_| CidrError::Malformed)?;
        if prefix.is_empty() || prefix.len() > 2 || !prefix.bytes().all(|b| b.is_ascii_digit()) {
            return Err(CidrError::Malformed);
        }
        let prefix: u8 = prefix.parse().map_err(|_| CidrError::Malformed)?;
        if prefix > 32 {
            return Err(CidrError::Malformed);
        }
        let addr = u32::from(ip);
        let network = Self { addr: addr & mask(prefix), prefix };
        if network.addr != addr {
            return Err(CidrError::HostBitsSet { network });
        }
        Ok(network)
    }

    pub fn prefix(self) -> u8 {
        self.prefix
    }

    pub fn network(self) -> Ipv4Addr {
        Ipv4Addr::from(self.addr)
    }

    /// Number of addresses in the block.
    pub fn size(self) -> u64 {
        1u64 << (32 - u32::from(self.prefix))
    }

    /// The `n`-th address of the block (0 is the network address).
    pub fn nth(self, n: u32) -> Option<Ipv4Addr> {
        (u64::from(n) < self.size()).then(|| Ipv4Addr::from(self.addr + n))
    }

    fn last(self) -> u32 {
        self.addr | !mask(self.prefix)
    }

    pub fn contains(self, other: Ipv4Cidr) -> bool {
        self.prefix <= other.prefix && other.addr & mask(self.prefix) == self.addr
    }

    pub fn overlaps(self, other: Ipv4Cidr) -> bool {
        self.addr <= other.last() && other.addr <= self.last()
    }

    /// The first sub-block of the given prefix length, e.g. the first /24 of a /16.
    pub fn first_subnet(self, prefix: u8) -> Option<Ipv4Cidr> {
        (prefix >= self.prefix && prefix <= 32).then_some(Self { addr: self.addr, prefix })
    }
}

fn mask(prefix: u8) -> u32 {
    if prefix == 0 { 0 } else { u32::MAX << (32 - u32::from(prefix)) }
}

/// Serialized as its text form (`"10.0.0.0/16"`), as in the cluster file.
impl serde::Serialize for Ipv4Cidr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network(), self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(s: &str) -> Ipv4Cidr {
        Ipv4Cidr::parse(s).unwrap()
    }

    #[test]
    fn parses_and_prints_round_trip() {
        for s in ["10.0.0.0/16", "0.0.0.0/0", "192.168.1.7/32", "172.16.0.0/12"] {
            assert_eq!(c(s).to_string(), s);
        }
    }

    #[test]
    fn rejects_malformed_blocks() {
        for s in ["10.0.0.0", "10.0.0/16", "10.0.0.0/33", "10.0.0.0/-1", "10.0.0.0/1a", "256.0.0.0/8", "010.0.0.0/8", "", "/"] {
            assert_eq!(Ipv4Cidr::parse(s), Err(CidrError::Malformed), "{s}");
        }
    }

    #[test]
    fn names_the_network_when_host_bits_are_set() {
        assert_eq!(Ipv4Cidr::parse("10.0.1.5/16"), Err(CidrError::HostBitsSet { network: c("10.0.0.0/16") }));
    }

    #[test]
    fn containment_and_overlap() {
        assert!(c("10.0.0.0/16").contains(c("10.0.1.0/24")));
        assert!(!c("10.0.1.0/24").contains(c("10.0.0.0/16")));
        assert!(c("10.0.0.0/16").overlaps(c("10.0.255.0/24")));
        assert!(c("10.0.255.0/24").overlaps(c("10.0.0.0/16")));
        assert!(!c("10.0.0.0/16").overlaps(c("10.1.0.0/16")));
        assert!(c("0.0.0.0/0").overlaps(c("10.1.0.0/16")));
    }

    #[test]
    fn nth_address() {
        assert_eq!(c("10.96.0.0/12").nth(10), Some(Ipv4Addr::new(10, 96, 0, 10)));
        assert_eq!(c("10.0.0.0/30").nth(4), None);
    }
}
