//! kube-scheduler (ferrokube): drop-in replacement for upstream's binary.

use std::process::ExitCode;

use scheduler::cmd::{self, flags};

fn main() -> ExitCode {
    let (options, ignored) = match flags::parse(std::env::args_os()) {
        Ok(Some(parsed)) => parsed,
        Ok(None) => {
            println!("{}", component_base::version::version_line());
            return ExitCode::SUCCESS;
        }
        Err(flags::ParseError::Clap(e)) => e.exit(),
        Err(flags::ParseError::Invalid(message)) => {
            eprintln!("Error: {message}");
            return ExitCode::from(1);
        }
    };
    component_base::logging::init(options.logging_format, options.verbosity);
    component_base::flags::warn_ignored(flags::COMPONENT, &ignored);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(cmd::run(options)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "kube-scheduler failed");
            ExitCode::from(1)
        }
    }
}
