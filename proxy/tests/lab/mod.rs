//! A throwaway network lab for real-kernel tests: a "node" namespace (where the rules go,
//! forwarding on), a client namespace and two backend namespaces, joined by veth pairs,
//! with TCP/UDP echo servers that answer with their backend's name. Everything lives in
//! namespaces this process creates and removes; no host address is touched.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsFd;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// Why the lab cannot run here, if it cannot.
pub fn unavailable() -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some("not root (network namespaces and nftables need root)".into());
    }
    for (tool, arg) in [("nft", "--version"), ("ip", "-V")] {
        if Command::new(tool)
            .arg(arg)
            .output()
            .map(|o| !o.status.success())
            .unwrap_or(true)
        {
            return Some(format!("`{tool}` is not installed"));
        }
    }
    None
}

/// Prints a loud skip line and records it in `$FERROKUBE_SKIP_LOG`.
pub fn skip(test: &str, why: &str) {
    let line = format!("SKIPPED: {test}: {why}");
    eprintln!("{line}");
    if let Some(path) = std::env::var_os("FERROKUBE_SKIP_LOG") {
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = writeln!(f, "{line}");
        }
    }
}

/// Skips the calling test (returning from it) when the lab cannot run.
#[macro_export]
macro_rules! lab_or_skip {
    ($name:expr) => {
        match lab::unavailable() {
            Some(why) => {
                lab::skip($name, &why);
                return;
            }
            None => lab::Lab::new(),
        }
    };
}

fn sh(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .expect("spawn");
    assert!(
        out.status.success(),
        "{}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A named network namespace, deleted on drop.
pub struct Netns {
    /// Its name under /var/run/netns.
    pub name: String,
}

impl Netns {
    fn create(name: String) -> Self {
        sh(&["ip", "netns", "add", &name]);
        sh(&["ip", "-n", &name, "link", "set", "lo", "up"]);
        Netns { name }
    }

    /// A bare namespace (loopback only) for benchmarks.
    pub fn create_for_bench(name: &str) -> Self {
        Netns::create(name.to_string())
    }

    /// Runs `f` on a thread that has entered this namespace (sockets it opens stay there).
    pub fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> std::thread::JoinHandle<T> {
        let path = format!("/var/run/netns/{}", self.name);
        std::thread::spawn(move || {
            let file = std::fs::File::open(&path).expect("open netns");
            nix::sched::setns(file.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
            f()
        })
    }

    /// Runs a command inside the namespace and returns its stdout.
    pub fn exec(&self, args: &[&str]) -> String {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(args)
            .output()
            .expect("spawn");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// The lab: node, client and two backends.
pub struct Lab {
    /// Where kube-proxy's rules are applied.
    pub node: Netns,
    /// Where connections start.
    pub client: Netns,
    /// The backends (each serves on [`BACKEND_PORT`]).
    pub backends: Vec<Netns>,
    stop: Arc<AtomicUsize>,
}

/// The client's address.
pub const CLIENT_IP: &str = "10.99.1.2";
/// The node's address on the client side (NodePorts are reached here).
pub const NODE_IP: &str = "10.99.1.1";
/// The backends' addresses.
pub const BACKEND_IPS: [&str; 2] = ["10.99.2.2", "10.99.3.2"];
/// The port the echo servers listen on (TCP and UDP).
pub const BACKEND_PORT: u16 = 8080;

impl Lab {
    /// Builds the topology and starts the echo servers.
    pub fn new() -> Self {
        let id = format!(
            "fkp{}x{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        );
        let node = Netns::create(format!("{id}-node"));
        let client = Netns::create(format!("{id}-client"));
        let backends: Vec<Netns> = (0..2)
            .map(|i| Netns::create(format!("{id}-be{i}")))
            .collect();
        link(&node, &client, &format!("{id}c"), NODE_IP, CLIENT_IP);
        for (i, be) in backends.iter().enumerate() {
            link(
                &node,
                be,
                &format!("{id}b{i}"),
                &format!("10.99.{}.1", i + 2),
                BACKEND_IPS[i],
            );
        }
        sh(&[
            "ip",
            "netns",
            "exec",
            &node.name,
            "sysctl",
            "-qw",
            "net.ipv4.ip_forward=1",
        ]);
        // A real node has a default route; without one, packets to ClusterIPs would fail
        // routing before kube-proxy's filter chains could reject them.
        sh(&[
            "ip",
            "-n",
            &node.name,
            "route",
            "add",
            "default",
            "via",
            BACKEND_IPS[0],
        ]);
        let stop = Arc::new(AtomicUsize::new(0));
        for (i, be) in backends.iter().enumerate() {
            let name = format!("backend-{i}");
            let (tcp_ready, udp_ready) = (std::sync::mpsc::channel(), std::sync::mpsc::channel());
            let (n, tx) = (name.clone(), tcp_ready.0);
            be.run(move || tcp_echo(n, tx));
            let (n, tx) = (name, udp_ready.0);
            be.run(move || udp_echo(n, tx));
            tcp_ready.1.recv().expect("tcp server up");
            udp_ready.1.recv().expect("udp server up");
        }
        Lab {
            node,
            client,
            backends,
            stop,
        }
    }

    /// Opens a TCP connection from the client to `addr`; returns the backend's name or the error.
    pub fn tcp(&self, addr: &str) -> Result<String, std::io::Error> {
        let addr: SocketAddr = addr.parse().unwrap();
        self.client.run(move || tcp_ask(addr)).join().unwrap()
    }

    /// `n` TCP connections; returns the answers (backend names or error kinds).
    pub fn tcp_many(&self, addr: &str, n: usize) -> Vec<String> {
        let addr: SocketAddr = addr.parse().unwrap();
        self.client
            .run(move || {
                (0..n)
                    .map(|_| tcp_ask(addr).unwrap_or_else(|e| format!("error: {:?}", e.kind())))
                    .collect()
            })
            .join()
            .unwrap()
    }

    /// One UDP request/answer from the client to `addr` (each from a fresh source port).
    pub fn udp(&self, addr: &str) -> Result<String, std::io::Error> {
        let addr: SocketAddr = addr.parse().unwrap();
        self.client
            .run(move || {
                let sock = UdpSocket::bind("0.0.0.0:0")?;
                sock.set_read_timeout(Some(Duration::from_secs(2)))?;
                sock.send_to(b"ping\n", addr)?;
                let mut buf = [0u8; 128];
                let (n, _) = sock.recv_from(&mut buf)?;
                Ok(String::from_utf8_lossy(&buf[..n]).trim().to_string())
            })
            .join()
            .unwrap()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.stop.store(1, Ordering::SeqCst);
        // Deleting the namespaces (Netns::drop) closes the servers' interfaces; the server
        // threads stay blocked in accept/recv and end with the process.
    }
}

fn link(a: &Netns, b: &Netns, name: &str, a_ip: &str, b_ip: &str) {
    let (va, vb) = (format!("{name}a"), format!("{name}b"));
    sh(&[
        "ip", "link", "add", &va, "netns", &a.name, "type", "veth", "peer", "name", &vb, "netns",
        &b.name,
    ]);
    sh(&[
        "ip",
        "-n",
        &a.name,
        "addr",
        "add",
        &format!("{a_ip}/24"),
        "dev",
        &va,
    ]);
    sh(&[
        "ip",
        "-n",
        &b.name,
        "addr",
        "add",
        &format!("{b_ip}/24"),
        "dev",
        &vb,
    ]);
    sh(&["ip", "-n", &a.name, "link", "set", &va, "up"]);
    sh(&["ip", "-n", &b.name, "link", "set", &vb, "up"]);
    sh(&["ip", "-n", &b.name, "route", "add", "default", "via", a_ip]);
}

fn tcp_ask(addr: SocketAddr) -> Result<String, std::io::Error> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    s.write_all(b"ping\n")?;
    let mut line = String::new();
    BufReader::new(&mut s).read_line(&mut line)?;
    Ok(line.trim().to_string())
}

fn tcp_echo(name: String, ready: std::sync::mpsc::Sender<()>) {
    let l = TcpListener::bind(("0.0.0.0", BACKEND_PORT)).expect("bind tcp");
    ready.send(()).unwrap();
    for conn in l.incoming() {
        let Ok(mut c) = conn else { return };
        let name = name.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 64];
            let _ = c.set_read_timeout(Some(Duration::from_secs(2)));
            let _ = c.read(&mut buf);
            let _ = writeln!(c, "{name}");
        });
    }
}

fn udp_echo(name: String, ready: std::sync::mpsc::Sender<()>) {
    let s = UdpSocket::bind(("0.0.0.0", BACKEND_PORT)).expect("bind udp");
    ready.send(()).unwrap();
    let mut buf = [0u8; 64];
    while let Ok((_, from)) = s.recv_from(&mut buf) {
        let _ = s.send_to(format!("{name}\n").as_bytes(), from);
    }
}
