//! `kubectl logs`: the kubelet's reading of the query (`tailLines`, `sinceSeconds`,
//! `limitBytes`, ...) and of CRI log files (`<RFC3339Nano> <stream> <P|F> <content>`).

use chrono::{DateTime, Utc};
use kubelet::server::logs::{parse_line, Formatter, LogOptions};
use std::collections::HashMap;

/// The first line is a query string (`k=v&k=v`), the rest a CRI log file. What the
/// formatter returns must respect `limitBytes`.
pub fn fuzz(data: &[u8]) {
    let (query, log) = match data.iter().position(|b| *b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let query: HashMap<String, String> = crate::text(query)
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let now = DateTime::<Utc>::from_timestamp(1_700_000_000, 0).expect("a valid instant");
    let opts = LogOptions::from_query(&query, now).unwrap_or_default();
    let limit = opts.limit_bytes;
    let mut formatter = Formatter::new(opts);
    let mut sent = 0u64;
    for line in log.split(|b| *b == b'\n') {
        if let Ok(entry) = parse_line(line) {
            sent += formatter.format(&entry).len() as u64;
        }
    }
    if let Some(limit) = limit {
        assert!(sent <= limit, "sent {sent} bytes past limitBytes={limit}");
    }
}
