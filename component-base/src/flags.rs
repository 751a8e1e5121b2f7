//! Upstream-compatible command lines.
//!
//! Every component keeps a table of all flags its upstream 1.35 counterpart accepts (see
//! [`FlagTable`]). Flags the component's clap command defines are *implemented* and act;
//! flags only in the upstream table are *accepted* and ignored with one warning naming them;
//! anything else is an error with a suggestion, as a typo should be. Flag names are
//! normalised as pflag's word-separator normaliser does (`--foo_bar` is `--foo-bar`), and
//! `--version` prints the emulated Kubernetes version as upstream does.

use std::ffi::OsString;
use std::fmt;

/// One flag of upstream's command line, as the table lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamFlag {
    /// Long name without dashes, e.g. `leader-elect`.
    pub name: String,
    /// pflag's type word, `bool` for boolean flags (which take no separate value).
    pub kind: String,
}

impl UpstreamFlag {
    /// Whether the flag consumes the next argument when written without `=`.
    pub fn takes_value(&self) -> bool {
        self.kind != "bool"
    }
}

/// The flags of one upstream component, read from a table with one `name type` pair a line
/// (`#` starts a comment). Such a table is the list of long flags upstream's `--help`
/// prints, with pflag's type word (`bool` where it prints none).
#[derive(Debug, Clone)]
pub struct FlagTable {
    component: &'static str,
    flags: Vec<UpstreamFlag>,
}

/// A command line that names a flag neither ferrokube nor upstream knows, or is malformed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlagError(pub String);

impl fmt::Display for FlagError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for FlagError {}

/// What [`FlagTable::filter`] leaves for clap, and the upstream flags it dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilteredArgs {
    /// The arguments clap should parse: program name, implemented flags and positionals.
    pub args: Vec<OsString>,
    /// Upstream flags that were given but are not implemented (without dashes), in order.
    pub ignored: Vec<String>,
}

/// Flags every component handles the same way, whether or not its clap command lists them.
const ALWAYS_KNOWN: &[&str] = &["help", "version"];

impl FlagTable {
    /// Parses a table (see the type's docs). Panics only on a malformed *compiled-in* table,
    /// which a unit test of every component catches.
    pub fn parse(component: &'static str, table: &str) -> Self {
        let flags = table
            .lines()
            .map(|l| l.split('#').next().unwrap_or("").trim())
            .filter(|l| !l.is_empty())
            .map(|l| {
                let mut parts = l.split_whitespace();
                let name = parts.next().unwrap_or_default().trim_start_matches('-');
                let kind = parts.next().unwrap_or("bool");
                UpstreamFlag {
                    name: name.to_string(),
                    kind: kind.to_string(),
                }
            })
            .collect();
        FlagTable { component, flags }
    }

    /// The component's name, e.g. `kube-scheduler`.
    pub fn component(&self) -> &'static str {
        self.component
    }

    /// All upstream flags of the table.
    pub fn flags(&self) -> &[UpstreamFlag] {
        &self.flags
    }

    /// Looks a flag up by its long name.
    pub fn get(&self, name: &str) -> Option<&UpstreamFlag> {
        self.flags.iter().find(|f| f.name == name)
    }

    /// Long names (and aliases) of the flags `cmd` implements.
    fn implemented(cmd: &clap::Command) -> Vec<(String, bool)> {
        cmd.get_arguments()
            .flat_map(|a| {
                // A flag written `--flag=value` only (pflag booleans) never takes the next argument.
                let takes_value = a.get_action().takes_values() && !a.is_require_equals_set();
                a.get_long_and_visible_aliases()
                    .unwrap_or_default()
                    .into_iter()
                    .chain(a.get_all_aliases().unwrap_or_default())
                    .map(move |n| (n.to_string(), takes_value))
            })
            .collect()
    }

    /// Splits a command line into what `cmd` parses and the upstream flags it ignores.
    pub fn filter(
        &self,
        cmd: &clap::Command,
        argv: impl IntoIterator<Item = OsString>,
    ) -> Result<FilteredArgs, FlagError> {
        let implemented = Self::implemented(cmd);
        let shorts: Vec<(char, String)> = cmd
            .get_arguments()
            .filter_map(|a| Some((a.get_short()?, a.get_long()?.to_string())))
            .collect();
        let mut argv = argv.into_iter();
        let mut out = FilteredArgs {
            args: argv.next().into_iter().collect(),
            ignored: Vec::new(),
        };
        let mut positional_only = false;
        while let Some(arg) = argv.next() {
            let Some(text) = arg.to_str().map(str::to_string) else {
                out.args.push(arg);
                continue;
            };
            if positional_only || !text.starts_with('-') || text == "-" {
                out.args.push(arg);
                continue;
            }
            if text == "--" {
                positional_only = true;
                out.args.push(arg);
                continue;
            }
            let (dashes, body) = if let Some(b) = text.strip_prefix("--") {
                ("--", b)
            } else {
                ("-", &text[1..])
            };
            let (raw_name, value) = match body.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (body, None),
            };
            let mut name = raw_name.replace('_', "-");
            if dashes == "-" {
                // pflag shorthands: one letter; klog's `-v` is the shorthand for `--v`.
                let mut chars = name.chars();
                match (chars.next(), chars.next()) {
                    (Some('h'), None) => name = "help".into(),
                    (Some(c), None) => match shorts.iter().find(|(s, _)| *s == c) {
                        Some((_, long)) => name = long.clone(),
                        None => return Err(self.unknown(&text, &name, &implemented)),
                    },
                    _ => {
                        return Err(FlagError(format!(
                            "{}: unknown shorthand flag in {text:?} (long flags take two dashes: \"--{name}\")",
                            self.component
                        )))
                    }
                }
            }
            let normalised = match value {
                Some(v) => OsString::from(format!("--{name}={v}")),
                None => OsString::from(format!("--{name}")),
            };
            if let Some((_, takes_value)) = implemented.iter().find(|(n, _)| *n == name) {
                out.args.push(normalised);
                if *takes_value && value.is_none() {
                    if let Some(next) = argv.next() {
                        out.args.push(next);
                    }
                }
            } else if ALWAYS_KNOWN.contains(&name.as_str()) {
                out.args.push(normalised);
            } else if let Some(flag) = self.get(&name) {
                if flag.takes_value() && value.is_none() && argv.next().is_none() {
                    return Err(FlagError(format!(
                        "{}: flag needs an argument: --{name}",
                        self.component
                    )));
                }
                if !out.ignored.contains(&name) {
                    out.ignored.push(name);
                }
            } else {
                return Err(self.unknown(&text, &name, &implemented));
            }
        }
        Ok(out)
    }

    /// Long flags `cmd` implements that upstream's table lacks: a component's unit test
    /// asserts this is empty (or lists only documented ferrokube additions), so no flag is
    /// invented by accident.
    pub fn not_upstream(&self, cmd: &clap::Command) -> Vec<String> {
        Self::implemented(cmd)
            .into_iter()
            .map(|(n, _)| n)
            .filter(|n| self.get(n).is_none() && !ALWAYS_KNOWN.contains(&n.as_str()))
            .collect()
    }

    fn unknown(&self, text: &str, name: &str, implemented: &[(String, bool)]) -> FlagError {
        let best = implemented
            .iter()
            .map(|(n, _)| n.as_str())
            .chain(self.flags.iter().map(|f| f.name.as_str()))
            .map(|candidate| (strsim::jaro_winkler(name, candidate), candidate))
            .filter(|(score, _)| *score > 0.8)
            .max_by(|a, b| a.0.total_cmp(&b.0));
        let hint = match best {
            Some((_, candidate)) => format!(" (did you mean --{candidate}?)"),
            None => String::new(),
        };
        FlagError(format!(
            "{}: unknown flag: {text}{hint}; see --help",
            self.component
        ))
    }
}

/// The outcome of [`parse`]: clap's matches plus the upstream flags that were ignored.
pub struct ParsedArgs {
    /// clap's matches, for [`explicitly_set`] and typed extraction.
    pub matches: clap::ArgMatches,
    /// Upstream flags accepted but not implemented; log them with [`warn_ignored`].
    pub ignored: Vec<String>,
}

/// Parses the process's command line against `cmd` and `table`; prints help, the version
/// or an error and exits as upstream's binaries do.
pub fn parse(table: &FlagTable, cmd: clap::Command) -> ParsedArgs {
    match try_parse(table, cmd, std::env::args_os()) {
        Ok(Some(parsed)) => parsed,
        Ok(None) => {
            println!("{}", crate::version::version_line());
            std::process::exit(0)
        }
        Err(err) => err.exit(),
    }
}

/// Like [`parse`] without exiting: `Ok(None)` means `--version` was asked for.
pub fn try_parse(
    table: &FlagTable,
    cmd: clap::Command,
    argv: impl IntoIterator<Item = OsString>,
) -> Result<Option<ParsedArgs>, clap::Error> {
    let cmd = cmd.disable_version_flag(true).arg(
        clap::Arg::new("version")
            .long("version")
            .help("Print version information and quit")
            .num_args(0..=1)
            .require_equals(true)
            .default_missing_value("true"),
    );
    let filtered = table
        .filter(&cmd, argv)
        .map_err(|e| clap::Error::raw(clap::error::ErrorKind::UnknownArgument, format!("{e}\n")))?;
    let matches = cmd.try_get_matches_from(filtered.args)?;
    if let Some(v) = matches.get_one::<String>("version") {
        if v != "false" {
            return Ok(None);
        }
    }
    Ok(Some(ParsedArgs {
        matches,
        ignored: filtered.ignored,
    }))
}

/// Logs, once, the upstream flags that were accepted but are not implemented.
pub fn warn_ignored(component: &str, ignored: &[String]) {
    if !ignored.is_empty() {
        let flags: Vec<String> = ignored.iter().map(|f| format!("--{f}")).collect();
        tracing::warn!(
            component,
            flags = %flags.join(","),
            "Flags accepted for compatibility with upstream but not implemented by ferrokube; they are ignored"
        );
    }
}

/// Whether the user set `id` on the command line (rather than clap's default): flags set
/// explicitly override the component-config file, as upstream's.
pub fn explicitly_set(matches: &clap::ArgMatches, id: &str) -> bool {
    matches!(
        matches.value_source(id),
        Some(clap::parser::ValueSource::CommandLine)
    )
}

/// A pflag-style boolean: `--flag` and `--flag=true|false`, never `--flag false`.
pub fn bool_flag(id: &'static str, default: bool) -> clap::Arg {
    clap::Arg::new(id)
        .long(id)
        .num_args(0..=1)
        .require_equals(true)
        .default_missing_value("true")
        .default_value(if default { "true" } else { "false" })
        .value_parser(clap::builder::BoolishValueParser::new())
}

/// [`parse`] for a clap-derive options type: the typed options plus the raw parse.
pub fn parse_derive<P: clap::Parser>(table: &FlagTable) -> (P, ParsedArgs) {
    let parsed = parse(table, P::command());
    match P::from_arg_matches(&parsed.matches) {
        Ok(opts) => (opts, parsed),
        Err(err) => err.exit(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> FlagTable {
        FlagTable::parse(
            "kube-test",
            "# upstream flags\nkubeconfig string\nleader-elect bool\nlock-object-name string\nprofiling bool\ncontention-profiling bool\nv Level\n",
        )
    }

    fn cmd() -> clap::Command {
        clap::Command::new("kube-test")
            .arg(clap::Arg::new("kubeconfig").long("kubeconfig"))
            .arg(bool_flag("leader-elect", true))
            .arg(clap::Arg::new("v").long("v").short('v'))
    }

    fn argv(args: &[&str]) -> Vec<OsString> {
        std::iter::once("kube-test")
            .chain(args.iter().copied())
            .map(OsString::from)
            .collect()
    }

    #[test]
    fn implemented_flags_pass_through_and_unimplemented_are_dropped() {
        let out = table()
            .filter(
                &cmd(),
                argv(&[
                    "--kubeconfig",
                    "/k",
                    "--profiling",
                    "--lock-object-name",
                    "x",
                    "--leader-elect=false",
                ]),
            )
            .unwrap();
        assert_eq!(
            out.args,
            argv(&["--kubeconfig", "/k", "--leader-elect=false"])
        );
        assert_eq!(out.ignored, vec!["profiling", "lock-object-name"]);
    }

    #[test]
    fn underscores_normalise_and_shorthand_v_maps_to_long() {
        let out = table()
            .filter(&cmd(), argv(&["--leader_elect", "-v=4", "-v", "2"]))
            .unwrap();
        assert_eq!(out.args, argv(&["--leader-elect", "--v=4", "--v", "2"]));
    }

    #[test]
    fn unknown_flag_is_an_error_with_a_suggestion() {
        let err = table()
            .filter(&cmd(), argv(&["--kubeconfg=/k"]))
            .unwrap_err();
        assert!(err.0.contains("unknown flag: --kubeconfg=/k"), "{err}");
        assert!(err.0.contains("did you mean --kubeconfig?"), "{err}");
        let err = table().filter(&cmd(), argv(&["--zzz"])).unwrap_err();
        assert!(!err.0.contains("did you mean"), "{err}");
    }

    #[test]
    fn ignored_value_flag_without_value_is_an_error() {
        let err = table()
            .filter(&cmd(), argv(&["--lock-object-name"]))
            .unwrap_err();
        assert!(
            err.0.contains("flag needs an argument: --lock-object-name"),
            "{err}"
        );
    }

    #[test]
    fn invented_flags_are_reported() {
        let cmd = cmd().arg(clap::Arg::new("made-up").long("made-up"));
        assert_eq!(table().not_upstream(&cmd), vec!["made-up"]);
        assert!(table().not_upstream(&super::tests::cmd()).is_empty());
    }

    #[test]
    fn positionals_after_double_dash_are_untouched() {
        let out = table()
            .filter(&cmd(), argv(&["--", "--not-a-flag"]))
            .unwrap();
        assert_eq!(out.args, argv(&["--", "--not-a-flag"]));
    }

    #[test]
    fn version_and_explicit_values() {
        assert!(try_parse(&table(), cmd(), argv(&["--version"]))
            .unwrap()
            .is_none());
        let parsed = try_parse(
            &table(),
            cmd(),
            argv(&["--leader-elect=false", "--profiling"]),
        )
        .unwrap()
        .unwrap();
        assert!(!parsed
            .matches
            .get_one::<bool>("leader-elect")
            .copied()
            .unwrap());
        assert!(explicitly_set(&parsed.matches, "leader-elect"));
        assert!(!explicitly_set(&parsed.matches, "kubeconfig"));
        assert_eq!(parsed.ignored, vec!["profiling"]);
        let defaulted = try_parse(&table(), cmd(), argv(&[])).unwrap().unwrap();
        assert!(defaulted
            .matches
            .get_one::<bool>("leader-elect")
            .copied()
            .unwrap());
        assert!(!explicitly_set(&defaulted.matches, "leader-elect"));
    }

    #[test]
    fn bad_bool_value_is_rejected_by_clap() {
        assert!(try_parse(&table(), cmd(), argv(&["--leader-elect=maybe"])).is_err());
    }
}
