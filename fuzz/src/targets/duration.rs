//! Go durations (`1m30s`, `500ms`) as flags and component-config files write them.

use component_base::duration::GoDuration;

/// Parses; a duration that parses must print and parse back to the same value.
pub fn fuzz(data: &[u8]) {
    let s = crate::text(data);
    if let Ok(d) = s.parse::<GoDuration>() {
        let printed = d.to_string();
        let again: GoDuration = printed
            .parse()
            .unwrap_or_else(|e| panic!("{s:?} prints as {printed:?}, which does not parse: {e}"));
        assert_eq!(again, d, "{s:?} prints as {printed:?}, a different value");
    }
}
