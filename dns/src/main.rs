//! `ferrokube-dns`: the cluster DNS server binary.

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let options = match dns::config::Options::try_parse() {
        Ok(o) => o,
        Err(e) => e.exit(),
    };
    if options.version {
        println!("ferrokube-dns {}", component_base::version::version());
        return ExitCode::SUCCESS;
    }
    component_base::logging::init(options.logging_format, options.verbosity);
    let workers = (options.workers > 0).then_some(options.workers);
    let config = match dns::config::validate(options) {
        Ok(c) => c,
        Err(message) => {
            eprintln!("Error: {message}");
            return ExitCode::from(1);
        }
    };
    component_base::app::block_on_workers("ferrokube-dns", workers, dns::app::run(config))
}
