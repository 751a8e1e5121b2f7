//! `kube-proxy`: ferrokube's drop-in replacement for upstream's network proxy.

mod cmd;

use cmd::options;
use std::process::ExitCode;

fn main() -> ExitCode {
    let parsed = component_base::flags::parse(&options::table(), options::command());
    let opts = match options::resolve(&parsed.matches) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{}: {e}", options::COMPONENT);
            return ExitCode::from(1);
        }
    };
    component_base::logging::init(opts.log_format, opts.verbosity);
    component_base::flags::warn_ignored(options::COMPONENT, &parsed.ignored);
    tracing::info!(version = %component_base::version::version(), "Starting kube-proxy");
    if opts.cleanup {
        if let Err(e) = cmd::run::cleanup() {
            tracing::error!(error = %e, "Cleanup failed");
            return ExitCode::from(1);
        }
        return ExitCode::SUCCESS;
    }
    // A node agent: two runtime threads whatever the machine's size.
    component_base::app::block_on_workers(options::COMPONENT, Some(2), cmd::run::run(opts))
}
