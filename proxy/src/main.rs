//! `kube-proxy`: ferrokube's drop-in replacement for upstream's network proxy.

mod cmd;

fn main() {}
