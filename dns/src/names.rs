//! Domain-name helpers: index keys, the names Kubernetes DNS gives to Services and
//! endpoints, and reverse (`in-addr.arpa` / `ip6.arpa`) names of addresses.

use hickory_proto::rr::Name;
use std::net::IpAddr;

/// The index key of `name`: lowercase presentation form without the trailing dot
/// (`Web.Default.svc.Cluster.Local.` → `web.default.svc.cluster.local`). DNS names compare
/// case-insensitively, so every lookup goes through this.
pub fn key_of(name: &Name) -> String {
    let mut key = String::with_capacity(name.len());
    for (i, label) in name.iter().enumerate() {
        if i > 0 {
            key.push('.');
        }
        for &b in label {
            match b {
                b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' => key.push(char::from(b)),
                b'A'..=b'Z' => key.push(char::from(b.to_ascii_lowercase())),
                // Anything else (a '.' inside a label, binary) escaped as \DDD, so distinct
                // names keep distinct keys.
                _ => {
                    let b = b.to_ascii_lowercase();
                    key.push('\\');
                    key.push_str(&format!("{b:03}"));
                }
            }
        }
    }
    key
}

/// Parses `text` as a fully-qualified name (a trailing dot is added when missing).
pub fn fqdn(text: &str) -> Option<Name> {
    let mut name = Name::from_ascii(text).ok()?;
    name.set_fqdn(true);
    Some(name)
}

/// `label.parent`, or `None` when the result is not a valid name (label too long, ...).
pub fn child(label: &str, parent: &Name) -> Option<Name> {
    parent.prepend_label(label).ok()
}

/// The name of a Service: `<service>.<namespace>.svc.<zone>`.
pub fn service_name(service: &str, namespace: &str, zone: &Name) -> Option<Name> {
    child(service, &child(namespace, &child("svc", zone)?)?)
}

/// The label an endpoint is known by under its Service: its `hostname` when set, else its
/// address with `.` and `:` replaced by `-` (as CoreDNS does).
pub fn endpoint_label(hostname: Option<&str>, address: IpAddr) -> String {
    match hostname {
        Some(h) if !h.is_empty() => h.to_string(),
        _ => dashed(address),
    }
}

/// `10.1.2.3` → `10-1-2-3`; `fd00::1` → `fd00--1`.
pub fn dashed(address: IpAddr) -> String {
    address.to_string().replace(['.', ':'], "-")
}

/// The address a pod-record label names (`10-1-2-3` → 10.1.2.3, `fd00--1` → fd00::1), as
/// CoreDNS's `pods insecure` reads it: three dashes and no `--` is IPv4, else IPv6.
pub fn undashed(label: &str) -> Option<IpAddr> {
    let text = if label.matches('-').count() == 3 && !label.contains("--") {
        label.replace('-', ".")
    } else {
        label.replace('-', ":")
    };
    text.parse().ok()
}

/// The reverse-lookup name of `address`: `3.2.1.10.in-addr.arpa.` or the nibble form under
/// `ip6.arpa.`.
pub fn reverse_name(address: IpAddr) -> Name {
    let text = match address {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            format!("{}.{}.{}.{}.in-addr.arpa.", o[3], o[2], o[1], o[0])
        }
        IpAddr::V6(v6) => {
            let mut s = String::with_capacity(73);
            for byte in v6.octets().iter().rev() {
                for nibble in [byte & 0x0f, byte >> 4] {
                    s.push(char::from_digit(u32::from(nibble), 16).unwrap_or('0'));
                    s.push('.');
                }
            }
            s.push_str("ip6.arpa.");
            s
        }
    };
    // Digits and dots only: always a valid name.
    Name::from_ascii(&text).unwrap_or_else(|_| Name::root())
}

/// Whether the index key `key` lies in (or is) the zone with key `zone`.
pub fn in_zone(key: &str, zone: &str) -> bool {
    if zone.is_empty() {
        return true;
    }
    key == zone
        || (key.len() > zone.len()
            && key.ends_with(zone)
            && key.as_bytes()[key.len() - zone.len() - 1] == b'.')
}

/// The labels of `key` in front of `zone` (which it must be in), nearest-the-root last:
/// `a.b.cluster.local` in `cluster.local` → `["a", "b"]`.
pub fn relative_labels<'k>(key: &'k str, zone: &str) -> Vec<&'k str> {
    if key.len() <= zone.len() {
        return Vec::new();
    }
    let prefix = if zone.is_empty() {
        key
    } else {
        &key[..key.len() - zone.len() - 1]
    };
    prefix.split('.').collect()
}

/// The keys of the proper ancestors of `key` (`a.b.c` → `b.c`, `c`).
pub fn ancestors(key: &str) -> impl Iterator<Item = &str> {
    let mut rest = key;
    std::iter::from_fn(move || {
        let dot = rest.find('.')?;
        rest = &rest[dot + 1..];
        Some(rest)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_lowercase_without_trailing_dot() {
        let name = fqdn("Web.Default.SVC.cluster.local").unwrap();
        assert_eq!(key_of(&name), "web.default.svc.cluster.local");
        assert_eq!(key_of(&Name::root()), "");
        let dotted = Name::from_labels(vec![b"a.b".to_vec(), b"C".to_vec()]).unwrap();
        assert_eq!(key_of(&dotted), "a\\046b.c");
    }

    #[test]
    fn service_and_endpoint_names() {
        let zone = fqdn("cluster.local").unwrap();
        let name = service_name("web", "default", &zone).unwrap();
        assert_eq!(name.to_ascii(), "web.default.svc.cluster.local.");
        assert_eq!(
            endpoint_label(None, "10.1.2.3".parse().unwrap()),
            "10-1-2-3"
        );
        assert_eq!(
            endpoint_label(Some("db-0"), "10.1.2.3".parse().unwrap()),
            "db-0"
        );
        assert_eq!(endpoint_label(None, "fd00::1".parse().unwrap()), "fd00--1");
    }

    #[test]
    fn pod_labels_parse_as_addresses() {
        assert_eq!(undashed("10-1-2-3"), Some("10.1.2.3".parse().unwrap()));
        assert_eq!(undashed("fd00--1"), Some("fd00::1".parse().unwrap()));
        assert_eq!(undashed("not-an-ip"), None);
        assert_eq!(undashed("10-1-2"), None);
    }

    #[test]
    fn reverse_names_of_both_families() {
        assert_eq!(
            reverse_name("10.96.0.10".parse().unwrap()).to_ascii(),
            "10.0.96.10.in-addr.arpa."
        );
        let v6 = reverse_name("fd00::1".parse().unwrap()).to_ascii();
        assert!(v6.starts_with("1.0.0.0.0.0.0.0."), "{v6}");
        assert!(v6.ends_with(".0.0.d.f.ip6.arpa."), "{v6}");
    }

    #[test]
    fn zone_membership_and_relative_labels() {
        assert!(in_zone("a.cluster.local", "cluster.local"));
        assert!(in_zone("cluster.local", "cluster.local"));
        assert!(!in_zone("acluster.local", "cluster.local"));
        assert!(in_zone("anything", ""));
        assert_eq!(
            relative_labels("a.b.cluster.local", "cluster.local"),
            vec!["a", "b"]
        );
        assert!(relative_labels("cluster.local", "cluster.local").is_empty());
        assert_eq!(ancestors("a.b.c").collect::<Vec<_>>(), vec!["b.c", "c"]);
    }
}
