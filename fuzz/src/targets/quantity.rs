//! Resource quantities (`100m`, `1.5Gi`, `2e3`) as every component reads them from pod
//! specs, node status and quotas (one parser: `api_helpers::quantity`).

use api_helpers::quantity::Quantity;

/// The parser and its roundings; a parsed quantity must print and parse back equal.
pub fn fuzz(data: &[u8]) {
    let s = crate::text(data);
    if let Ok(q) = Quantity::parse(&s) {
        let _ = (q.value(), q.milli_value(), q.ceil_units());
        let printed = q.to_string();
        let again = Quantity::parse(&printed)
            .unwrap_or_else(|e| panic!("{s:?} prints as {printed:?}, which does not parse: {e}"));
        assert_eq!(again, q, "{s:?} prints as {printed:?}, a different value");
    }
}
