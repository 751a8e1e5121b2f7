//! Free loopback ports for the processes a test starts.

use std::net::{Ipv4Addr, TcpListener};

use anyhow::{Context, Result};

/// Asks the kernel for a free TCP port on 127.0.0.1. The port is released before returning,
/// so a caller that cannot bind it in time (a rare race) should retry with a new one.
pub fn free_port() -> Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .context("binding 127.0.0.1:0 to find a port")?;
    Ok(listener.local_addr()?.port())
}

/// Whether something accepts TCP connections on 127.0.0.1:`port`.
pub fn is_listening(port: u16) -> bool {
    std::net::TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_ports_are_distinct_and_bindable() {
        let a = free_port().unwrap();
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, a)).unwrap();
        assert!(is_listening(a));
        let b = free_port().unwrap();
        assert_ne!(a, b);
        drop(listener);
    }
}
