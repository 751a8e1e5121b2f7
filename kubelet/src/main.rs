//! `kubelet`: ferrokube's drop-in node agent.

use component_base::logging::LogFormat;

fn main() -> std::process::ExitCode {
    let table = kubelet::config::flags::table();
    let parsed = component_base::flags::parse(&table, kubelet::config::flags::command());
    let verbosity = parsed.matches.get_one::<u8>("v").copied().unwrap_or(0);
    let format = match parsed
        .matches
        .get_one::<String>("logging-format")
        .map(String::as_str)
    {
        Some("json") => LogFormat::Json,
        _ => LogFormat::Text,
    };
    component_base::logging::init(format, verbosity);
    component_base::flags::warn_ignored("kubelet", &parsed.ignored);
    let opts = match kubelet::config::Options::resolve(&parsed.matches) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("E kubelet: {e:#}");
            std::process::exit(1);
        }
    };
    // Two workers: the kubelet's work is I/O-bound, and it should stay light on big nodes.
    component_base::app::block_on_workers("kubelet", Some(2), kubelet::app::run(opts))
}
