//! Reading the upstream resolvers from a resolv.conf, as CoreDNS's
//! `forward . /etc/resolv.conf` does: every `nameserver` line, port 53. As an extension
//! (for tests and non-standard ports) a nameserver may carry a port: `127.0.0.1:5353`,
//! `[::1]:5353`.

use std::net::{IpAddr, SocketAddr};

/// Why a resolv.conf cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ResolvConfError {
    /// The file cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// A `nameserver` line that is not an address.
    #[error("{path}:{line}: invalid nameserver {value:?}")]
    Invalid {
        /// The file.
        path: String,
        /// The line number.
        line: usize,
        /// The value.
        value: String,
    },
}

/// The nameservers of resolv.conf text `content` (`path` only names it in errors).
pub fn parse(path: &str, content: &str) -> Result<Vec<SocketAddr>, ResolvConfError> {
    let mut out = Vec::new();
    for (n, line) in content.lines().enumerate() {
        let line = line.trim();
        let mut words = line.split_whitespace();
        if words.next() != Some("nameserver") {
            continue;
        }
        let Some(value) = words.next() else {
            continue;
        };
        // Zone indexes (fe80::1%eth0) are dropped: no scope support.
        let bare = value.split('%').next().unwrap_or(value);
        let addr = bare
            .parse::<IpAddr>()
            .map(|ip| SocketAddr::new(ip, 53))
            .or_else(|_| bare.parse::<SocketAddr>())
            .map_err(|_| ResolvConfError::Invalid {
                path: path.into(),
                line: n + 1,
                value: value.into(),
            })?;
        if !out.contains(&addr) {
            out.push(addr);
        }
    }
    Ok(out)
}

/// Reads the nameservers of the resolv.conf at `path`.
pub fn read(path: &str) -> Result<Vec<SocketAddr>, ResolvConfError> {
    let content = std::fs::read_to_string(path).map_err(|source| ResolvConfError::Read {
        path: path.into(),
        source,
    })?;
    parse(path, &content)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nameservers_with_default_and_explicit_ports() {
        let conf = "# comment\nsearch default.svc.cluster.local\nnameserver 10.0.0.2\n\
                    nameserver fd00::53\nnameserver 127.0.0.1:5353\nnameserver [::1]:5300\n\
                    options ndots:5\nnameserver 10.0.0.2\n";
        let servers = parse("r", conf).unwrap();
        assert_eq!(
            servers,
            vec![
                "10.0.0.2:53".parse().unwrap(),
                "[fd00::53]:53".parse().unwrap(),
                "127.0.0.1:5353".parse().unwrap(),
                "[::1]:5300".parse().unwrap(),
            ]
        );
    }

    #[test]
    fn invalid_nameserver_names_file_and_line() {
        let err = parse("/etc/resolv.conf", "nameserver dns.example\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "/etc/resolv.conf:1: invalid nameserver \"dns.example\""
        );
        assert!(read("/nonexistent/resolv.conf").is_err());
    }
}
