//! `kube-controller-manager`: runs ferrokube's controllers against a kube-apiserver.

fn main() -> std::process::ExitCode {
    std::process::ExitCode::SUCCESS
}
