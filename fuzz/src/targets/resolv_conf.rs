//! The upstream resolvers ferrokube-dns forwards to, from `/etc/resolv.conf`.

/// Parses the text as a resolv.conf.
pub fn fuzz(data: &[u8]) {
    let _ = dns::resolv_conf::parse("/etc/resolv.conf", &crate::text(data));
}
