//! The nfnetlink socket: opened (optionally inside a named network namespace), sends one
//! batch, collects the kernel's errors and the acknowledgement of the last command.

use super::Batch;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const NETLINK_NETFILTER: i32 = 12;
const NLMSG_ERROR: u16 = 2;

/// Why a netlink apply failed.
#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    /// The socket could not be opened or used (no permission, no nf_tables, …).
    #[error("netlink socket: {0}")]
    Io(#[from] io::Error),
    /// The kernel rejected the batch (nothing was applied): errno and the line.
    #[error("kernel rejected line {line}: {error}")]
    Rejected {
        /// The transaction line (0-based) of the failing message.
        line: usize,
        /// The errno as an io::Error.
        error: io::Error,
    },
    /// Neither an error nor the acknowledgement arrived.
    #[error("no acknowledgement from the kernel")]
    NoAck,
}

fn check(rc: i64) -> io::Result<i64> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

fn open_here() -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2); the descriptor is owned right away.
    let fd = check(unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            NETLINK_NETFILTER,
        )
    } as i64)?;
    // SAFETY: fd was just returned by socket(2) and is not owned elsewhere.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Opens the socket in `netns` (a name under /run/netns) or the current namespace. A
/// socket stays in the namespace it was created in, so only a helper thread enters it.
pub fn open(netns: Option<&str>) -> io::Result<OwnedFd> {
    let Some(ns) = netns else {
        return open_here();
    };
    let path = format!("/run/netns/{ns}");
    std::thread::scope(|s| {
        s.spawn(|| {
            let f = std::fs::File::open(&path)?;
            // SAFETY: setns(2) on this helper thread only, with a valid descriptor.
            check(unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } as i64)?;
            open_here()
        })
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("netns helper thread panicked")))
    })
}

fn set_int(fd: &OwnedFd, opt: i32, v: i32) -> io::Result<()> {
    // SAFETY: setsockopt(2) with a pointer to a live i32 and its size.
    check(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            opt,
            &v as *const i32 as *const libc::c_void,
            std::mem::size_of::<i32>() as u32,
        )
    } as i64)
    .map(|_| ())
}

/// Sends `batch` on a fresh socket and waits for its outcome.
pub fn send(netns: Option<&str>, batch: &Batch) -> Result<(), NetlinkError> {
    let fd = open(netns)?;
    let len = batch.buf.bytes.len();
    // The batch must arrive in one message; let the socket take all of it.
    let snd = i32::try_from(len + 4096).unwrap_or(i32::MAX);
    if set_int(&fd, libc::SO_SNDBUFFORCE, snd).is_err() {
        set_int(&fd, libc::SO_SNDBUF, snd)?;
    }
    let _ = set_int(&fd, libc::SO_RCVBUFFORCE, 4 << 20);
    let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    addr.nl_family = libc::AF_NETLINK as u16;
    // SAFETY: sendto(2) with our buffer and a zeroed netlink address (the kernel).
    let sent = check(unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            batch.buf.bytes.as_ptr() as *const libc::c_void,
            len,
            0,
            &addr as *const libc::sockaddr_nl as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_nl>() as u32,
        )
    } as i64)?;
    if sent as usize != len {
        return Err(io::Error::other(format!("short netlink send: {sent} of {len} bytes")).into());
    }
    // The kernel handles the batch inside sendto, so every reply is queued by now; the
    // timeout only guards against a kernel that never answers.
    let tv = libc::timeval {
        tv_sec: 30,
        tv_usec: 0,
    };
    // SAFETY: setsockopt(2) with a live timeval.
    unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            &tv as *const libc::timeval as *const libc::c_void,
            std::mem::size_of::<libc::timeval>() as u32,
        )
    };
    let mut buf = vec![0u8; 1 << 16];
    let mut first_error: Option<NetlinkError> = None;
    loop {
        // SAFETY: recv(2) into our buffer.
        let n = match check(unsafe {
            libc::recv(
                fd.as_raw_fd(),
                buf.as_mut_ptr() as *mut libc::c_void,
                buf.len(),
                // After an error, only drain what is queued: the batch was aborted.
                if first_error.is_some() {
                    libc::MSG_DONTWAIT
                } else {
                    0
                },
            )
        } as i64)
        {
            Ok(n) => n as usize,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                return Err(first_error.unwrap_or(NetlinkError::NoAck))
            }
            Err(e) => return Err(e.into()),
        };
        let mut off = 0;
        while off + 16 <= n {
            let mlen = u32::from_ne_bytes(buf[off..off + 4].try_into().unwrap()) as usize;
            let ty = u16::from_ne_bytes(buf[off + 4..off + 6].try_into().unwrap());
            if mlen < 16 || off + mlen > n {
                break;
            }
            if ty == NLMSG_ERROR && mlen >= 20 {
                let errno = i32::from_ne_bytes(buf[off + 16..off + 20].try_into().unwrap());
                // The echoed header of the request follows the errno.
                let seq = if mlen >= 36 {
                    u32::from_ne_bytes(buf[off + 28..off + 32].try_into().unwrap())
                } else {
                    0
                };
                if errno != 0 {
                    first_error.get_or_insert(NetlinkError::Rejected {
                        line: batch.lines.get(seq as usize).copied().unwrap_or(0),
                        error: io::Error::from_raw_os_error(-errno),
                    });
                } else if seq == batch.last_seq {
                    return match first_error {
                        Some(e) => Err(e),
                        None => Ok(()),
                    };
                }
            }
            off += mlen.next_multiple_of(4);
        }
    }
}

const NLMSG_DONE: u16 = 3;
const F_DUMP: u16 = 0x300;
const GETTABLE: u16 = 1;
const GETCHAIN: u16 = 4;
const GETSET: u16 = 10;

/// Sends one request and collects the reply messages' payloads (after the netlink
/// header), until the dump ends or the acknowledgement arrives.
fn request(fd: &OwnedFd, buf: &super::attr::Buf) -> io::Result<Vec<Vec<u8>>> {
    // SAFETY: send(2) of our buffer on a connected-to-kernel netlink socket.
    check(unsafe {
        libc::send(
            fd.as_raw_fd(),
            buf.bytes.as_ptr() as *const libc::c_void,
            buf.bytes.len(),
            0,
        )
    } as i64)?;
    let mut out = Vec::new();
    let mut rx = vec![0u8; 1 << 16];
    loop {
        // SAFETY: recv(2) into our buffer.
        let n = check(unsafe {
            libc::recv(
                fd.as_raw_fd(),
                rx.as_mut_ptr() as *mut libc::c_void,
                rx.len(),
                0,
            )
        } as i64)? as usize;
        let mut off = 0;
        while off + 16 <= n {
            let mlen = u32::from_ne_bytes(rx[off..off + 4].try_into().unwrap()) as usize;
            let ty = u16::from_ne_bytes(rx[off + 4..off + 6].try_into().unwrap());
            if mlen < 16 || off + mlen > n {
                return Err(io::Error::other("truncated netlink reply"));
            }
            match ty {
                NLMSG_DONE => return Ok(out),
                NLMSG_ERROR => {
                    let errno = i32::from_ne_bytes(rx[off + 16..off + 20].try_into().unwrap());
                    if errno != 0 {
                        return Err(io::Error::from_raw_os_error(-errno));
                    }
                    return Ok(out);
                }
                _ => out.push(rx[off + 16..off + mlen].to_vec()),
            }
            off += mlen.next_multiple_of(4);
        }
    }
}

/// The string attribute `want` at the top level of a reply payload (after nfgenmsg).
fn str_attr(msg: &[u8], want: u16) -> Option<String> {
    let mut off = 4;
    while off + 4 <= msg.len() {
        let len = u16::from_ne_bytes(msg[off..off + 2].try_into().unwrap()) as usize;
        let ty = u16::from_ne_bytes(msg[off + 2..off + 4].try_into().unwrap()) & 0x7fff;
        if len < 4 || off + len > msg.len() {
            return None;
        }
        if ty == want {
            let v = &msg[off + 4..off + len];
            let v = v.split(|b| *b == 0).next().unwrap_or_default();
            return Some(String::from_utf8_lossy(v).into_owned());
        }
        off += len.next_multiple_of(4);
    }
    None
}

/// The chain and (named) set names of `table` in `family` (an NFPROTO value), or `None`
/// if the table does not exist: what a full sync needs to find leftovers, without
/// listing every rule (`nft -j list table` took minutes at 10,000 Services).
pub fn names(
    netns: Option<&str>,
    family: u8,
    table: &str,
) -> io::Result<Option<(Vec<String>, Vec<String>)>> {
    use super::attr::{Buf, F_REQUEST, SUBSYS_NFTABLES};
    let fd = open(netns)?;
    let _ = set_int(&fd, libc::SO_RCVBUFFORCE, 4 << 20);
    let msg = |ty: u16, flags: u16, table_attr: u16| {
        let mut b = Buf::default();
        b.begin((SUBSYS_NFTABLES << 8) | ty, F_REQUEST | flags, 1, family, 0);
        b.str(table_attr, table);
        b.end();
        b
    };
    match request(&fd, &msg(GETTABLE, super::attr::F_ACK, 1)) {
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(None),
        other => other?,
    };
    let in_table = |m: &Vec<u8>, attr: u16| str_attr(m, attr).as_deref() == Some(table);
    let chains = request(&fd, &msg(GETCHAIN, F_DUMP, 1))?
        .iter()
        .filter(|m| in_table(m, 1))
        .filter_map(|m| str_attr(m, 3))
        .collect();
    let sets = request(&fd, &msg(GETSET, F_DUMP, 1))?
        .iter()
        .filter(|m| in_table(m, 1))
        .filter_map(|m| str_attr(m, 2))
        .filter(|n| !n.starts_with("__"))
        .collect();
    Ok(Some((chains, sets)))
}
