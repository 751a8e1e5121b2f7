//! `kube-proxy`: ferrokube's drop-in replacement for upstream's network proxy.

mod cmd;

use cmd::options;

fn main() {
    let parsed = component_base::flags::parse(&options::table(), options::command());
    let opts = match options::resolve(&parsed.matches) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{}: {e}", options::COMPONENT);
            std::process::exit(1);
        }
    };
    component_base::logging::init(opts.log_format, opts.verbosity);
    component_base::flags::warn_ignored(options::COMPONENT, &parsed.ignored);
    tracing::info!(version = %component_base::version::version(), "Starting kube-proxy");
    if opts.cleanup {
        if let Err(e) = cmd::run::cleanup() {
            tracing::error!(error = %e, "Cleanup failed");
            std::process::exit(1);
        }
        return;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("kube-proxy: cannot start the runtime: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = runtime.block_on(cmd::run::run(opts)) {
        tracing::error!(error = %e, "kube-proxy failed");
        std::process::exit(1);
    }
}
