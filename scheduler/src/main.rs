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
    component_base::app::block_on("kube-scheduler", cmd::run(options))
}
