//! Resource quantities (`100m`, `1.5Gi`, `2e3`) as the scheduler, the kubelet and the
//! resource-quota controller read them from pod specs and quotas.

use controllers::lifecycle::resourcequota::quantity::Quantity;

/// Every quantity parser; the controllers' exact quantity must print and parse back equal.
pub fn fuzz(data: &[u8]) {
    let s = crate::text(data);
    let _ = scheduler::api::quantity::parse_milli(&s);
    let _ = scheduler::api::quantity::parse_value(&s);
    let _ = kubelet::pod::quantity::milli_cpu(&s);
    let _ = kubelet::pod::quantity::bytes(&s);
    if let Ok(q) = Quantity::parse(&s) {
        let printed = q.to_string();
        let again = Quantity::parse(&printed)
            .unwrap_or_else(|e| panic!("{s:?} prints as {printed:?}, which does not parse: {e}"));
        assert_eq!(again, q, "{s:?} prints as {printed:?}, a different value");
    }
}
