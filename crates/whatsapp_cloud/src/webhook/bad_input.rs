//! Input serde_json or Postgres cannot take as it is: items [`salvage::repair`] cut off for
//! their depth, and U+0000 characters.

use super::Rejected;
use crate::salvage;
use serde_json::Value;

/// Takes out of a change's lists (messages, statuses, ...) every item that [`salvage::repair`]
/// cut off for its depth: the change without them (`None` if there were none) and the items,
/// refused.
pub(super) fn take_too_deep(change: &Value) -> (Option<Value>, Vec<Rejected>) {
    let Some(value) = change.get("value").and_then(Value::as_object) else { return (None, Vec::new()) };
    if !value.values().any(salvage::holds_too_deep) {
        return (None, Vec::new());
    }
    let mut change = change.clone();
    let mut rejected = Vec::new();
    if let Some(Value::Object(value)) = change.get_mut("value") {
        for list in value.values_mut().filter_map(Value::as_array_mut) {
            let (deep, kept): (Vec<Value>, Vec<Value>) =
                std::mem::take(list).into_iter().partition(salvage::holds_too_deep);
            *list = kept;
            rejected.extend(deep.into_iter().map(|raw| Rejected { reason: salvage::TOO_DEEP_ITEM, raw }));
        }
    }
    (Some(change), rejected)
}

/// Replaces every U+0000 in the strings (and keys) of `v` with U+FFFD. JSON allows `\u0000`
/// but Postgres' `text` and `jsonb` cannot hold it: a signed message containing one must still
/// be stored (the raw POST keeps the exact bytes).
pub fn replace_nul(v: &mut Value) {
    const NUL: char = '\u{0}';
    match v {
        Value::String(s) if s.contains(NUL) => *s = s.replace(NUL, "\u{FFFD}"),
        Value::Array(items) => items.iter_mut().for_each(replace_nul),
        Value::Object(map) => {
            if map.keys().any(|k| k.contains(NUL)) {
                *map = std::mem::take(map).into_iter().map(|(k, v)| (k.replace(NUL, "\u{FFFD}"), v)).collect();
            }
            map.values_mut().for_each(replace_nul);
        }
        _ => {}
    }
}
