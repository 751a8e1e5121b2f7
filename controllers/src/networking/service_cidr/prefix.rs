//! IPv4/IPv6 prefixes as ServiceCIDRs name them, with the containment rules upstream's
//! `pkg/api/servicecidr` applies (a range's network address, and for IPv4 its broadcast
//! address, are never handed out, so they are not "in" the range).

use std::net::IpAddr;

/// A network prefix (`10.0.0.0/24`, `fd00::/108`), kept masked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prefix {
    base: u128,
    bits: u8,
    v6: bool,
}

/// `addr` as a 128-bit number and whether it is IPv6.
fn to_bits(addr: IpAddr) -> (u128, bool) {
    match addr {
        IpAddr::V4(a) => (u32::from(a) as u128, false),
        IpAddr::V6(a) => (u128::from(a), true),
    }
}

impl Prefix {
    /// Parses `addr/len`; `None` if it is not a prefix (as upstream, which skips such
    /// entries: the apiserver has already validated them).
    pub fn parse(s: &str) -> Option<Prefix> {
        let (addr, len) = s.split_once('/')?;
        let addr: IpAddr = addr.parse().ok()?;
        let bits: u8 = len.parse().ok()?;
        let (raw, v6) = to_bits(addr);
        if bits > Self::width_of(v6) {
            return None;
        }
        let p = Prefix { base: 0, bits, v6 };
        Some(Prefix {
            base: raw & p.mask(),
            ..p
        })
    }

    fn width_of(v6: bool) -> u8 {
        if v6 {
            128
        } else {
            32
        }
    }

    fn width(&self) -> u8 {
        Self::width_of(self.v6)
    }

    fn mask(&self) -> u128 {
        let host = (self.width() - self.bits) as u32;
        let all = if self.v6 { u128::MAX } else { u32::MAX as u128 };
        if host >= 128 {
            0
        } else {
            all & !((1u128 << host) - 1) & all
        }
    }

    /// The last address of the range.
    fn last(&self) -> u128 {
        let all = if self.v6 { u128::MAX } else { u32::MAX as u128 };
        self.base | (!self.mask() & all)
    }

    /// Whether this is an IPv6 prefix.
    pub fn is_ipv6(&self) -> bool {
        self.v6
    }

    /// Whether the two ranges share an address (same family).
    pub fn overlaps(&self, other: &Prefix) -> bool {
        self.v6 == other.v6 && self.base <= other.last() && other.base <= self.last()
    }

    /// Whether this range holds all of `other` (it overlaps and is no longer).
    pub fn contains_prefix(&self, other: &Prefix) -> bool {
        self.overlaps(other) && self.bits <= other.bits
    }

    /// Whether `addr` is an assignable address of this range: inside it, not its network
    /// address and, for IPv4, not its broadcast address.
    pub fn contains_address(&self, addr: IpAddr) -> bool {
        let (a, v6) = to_bits(addr);
        if v6 != self.v6 || a == self.base || (!v6 && a == self.last()) {
            return false;
        }
        a & self.mask() == self.base
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Prefix {
        Prefix::parse(s).unwrap()
    }

    #[test]
    fn parses_and_masks_both_families() {
        assert_eq!(p("10.0.0.7/24"), p("10.0.0.0/24"));
        assert!(p("fd00::1/108").is_ipv6());
        assert!(Prefix::parse("10.0.0.0/33").is_none());
        assert!(Prefix::parse("10.0.0.0").is_none());
        assert!(Prefix::parse("").is_none());
        assert_eq!(p("0.0.0.0/0"), p("1.2.3.4/0"));
    }

    #[test]
    fn overlap_and_containment() {
        assert!(p("10.0.0.0/16").overlaps(&p("10.0.1.0/24")));
        assert!(p("10.0.1.0/24").overlaps(&p("10.0.0.0/16")));
        assert!(!p("10.0.0.0/24").overlaps(&p("10.0.1.0/24")));
        assert!(!p("10.0.0.0/8").overlaps(&p("::/0")));
        assert!(p("10.0.0.0/16").contains_prefix(&p("10.0.1.0/24")));
        assert!(!p("10.0.1.0/24").contains_prefix(&p("10.0.0.0/16")));
        assert!(p("10.0.1.0/24").contains_prefix(&p("10.0.1.0/24")));
        assert!(p("fd00::/64").contains_prefix(&p("fd00::/108")));
    }

    #[test]
    fn network_and_ipv4_broadcast_addresses_are_not_contained() {
        let v4 = p("10.0.0.0/24");
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(v4.contains_address(ip("10.0.0.1")));
        assert!(v4.contains_address(ip("10.0.0.254")));
        assert!(!v4.contains_address(ip("10.0.0.0")));
        assert!(!v4.contains_address(ip("10.0.0.255")));
        assert!(!v4.contains_address(ip("10.0.1.1")));
        assert!(!v4.contains_address(ip("fd00::1")));
        let v6 = p("fd00::/112");
        assert!(v6.contains_address(ip("fd00::ffff")));
        assert!(!v6.contains_address(ip("fd00::")));
        assert!(!v6.contains_address(ip("fd00::1:0")));
    }
}
