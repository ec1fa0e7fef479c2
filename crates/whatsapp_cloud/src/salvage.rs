//! Repairs the two ways a signed webhook body that is otherwise JSON fails to parse as a whole,
//! so that one unreadable message does not cost the others of its POST:
//!
//! - a lone UTF-16 surrogate escape (`"\uD800"` without its pair): JSON's grammar allows it,
//!   but it is no character, and serde_json refuses the whole document. It becomes U+FFFD,
//!   as a browser would show it;
//! - nesting deeper than serde_json's recursion limit (128): every array or object opened
//!   deeper than [`MAX_DEPTH`] becomes the string [`TOO_DEEP`], and the parser then refuses
//!   the item that holds it (kept raw in the event, counted), not the POST.
//!
//! The signature has been checked on the exact bytes before; the stored event keeps them.

/// Deepest array or object kept; webhook payloads use about ten levels.
pub const MAX_DEPTH: usize = 64;

/// What stands in for a value nested deeper than [`MAX_DEPTH`].
pub const TOO_DEEP: &str = "[whatsapp_channel: nested deeper than 64 levels; see the raw webhook event]";

/// Why an item holding [`TOO_DEEP`] is refused.
pub const TOO_DEEP_ITEM: &str = "item nested deeper than 64 levels: kept in the raw webhook event only";

/// Whether `v` holds a value that [`repair`] cut off for its depth.
pub fn holds_too_deep(v: &serde_json::Value) -> bool {
    match v {
        serde_json::Value::String(s) => s == TOO_DEEP,
        serde_json::Value::Array(items) => items.iter().any(holds_too_deep),
        serde_json::Value::Object(map) => map.values().any(holds_too_deep),
        _ => false,
    }
}

/// The body with lone surrogates and too-deep values replaced, or `None` when there was
/// nothing of the kind to repair (the body is then broken in some other way).
pub fn repair(body: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(body.len());
    let mut repaired = false;
    let mut depth = 0usize;
    let mut i = 0;
    while i < body.len() {
        match body[i] {
            b'"' => {
                let end = string_end(body, i);
                repaired |= copy_string(&body[i..end], &mut out);
                i = end;
            }
            b'[' | b'{' if depth == MAX_DEPTH => {
                out.push(b'"');
                out.extend_from_slice(TOO_DEEP.as_bytes());
                out.push(b'"');
                i = value_end(body, i);
                repaired = true;
            }
            c => {
                match c {
                    b'[' | b'{' => depth += 1,
                    b']' | b'}' => depth = depth.saturating_sub(1),
                    _ => {}
                }
                out.push(c);
                i += 1;
            }
        }
    }
    repaired.then_some(out)
}

/// The index just past the string that starts at `start` (a `"`), or the end of the body.
fn string_end(body: &[u8], start: usize) -> usize {
    let mut i = start + 1;
    while i < body.len() {
        match body[i] {
            b'\\' => i += 2,
            b'"' => return i + 1,
            _ => i += 1,
        }
    }
    body.len()
}

/// The index just past the array or object that starts at `start`, strings included.
fn value_end(body: &[u8], start: usize) -> usize {
    let mut depth = 0usize;
    let mut i = start;
    while i < body.len() {
        match body[i] {
            b'"' => {
                i = string_end(body, i);
                continue;
            }
            b'[' | b'{' => depth += 1,
            b']' | b'}' => {
                depth -= 1;
                if depth == 0 {
                    return i + 1;
                }
            }
            _ => {}
        }
        i += 1;
    }
    body.len()
}

/// Copies one string literal (quotes included), each lone surrogate escape as `\uFFFD`;
/// whether any was.
fn copy_string(literal: &[u8], out: &mut Vec<u8>) -> bool {
    let mut repaired = false;
    let mut i = 0;
    while i < literal.len() {
        if literal[i] != b'\\' {
            out.push(literal[i]);
            i += 1;
            continue;
        }
        match escaped_unit(literal, i) {
            Some(0xD800..=0xDBFF)
                if escaped_unit(literal, i + 6).is_some_and(|low| (0xDC00..=0xDFFF).contains(&low)) =>
            {
                out.extend_from_slice(&literal[i..i + 12]); // a proper pair
                i += 12;
            }
            Some(0xD800..=0xDFFF) => {
                out.extend_from_slice(br"\uFFFD");
                repaired = true;
                i += 6;
            }
            Some(_) => {
                out.extend_from_slice(&literal[i..i + 6]);
                i += 6;
            }
            None => {
                // Any other escape: the backslash and the character it escapes.
                let end = (i + 2).min(literal.len());
                out.extend_from_slice(&literal[i..end]);
                i = end;
            }
        }
    }
    repaired
}

/// The UTF-16 unit of a `\uXXXX` escape at `at`, if there is one.
fn escaped_unit(s: &[u8], at: usize) -> Option<u32> {
    let escape = s.get(at..at + 6)?;
    if escape[0] != b'\\' || escape[1] != b'u' {
        return None;
    }
    u32::from_str_radix(std::str::from_utf8(&escape[2..]).ok()?, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repaired(body: &str) -> Option<String> {
        repair(body.as_bytes()).map(|b| String::from_utf8(b).unwrap())
    }

    #[test]
    fn a_lone_surrogate_becomes_the_replacement_character() {
        assert_eq!(repaired(r#"{"a":"x\uD800y"}"#).as_deref(), Some(r#"{"a":"x\uFFFDy"}"#));
        assert_eq!(repaired(r#"{"a":"\udc00"}"#).as_deref(), Some(r#"{"a":"\uFFFD"}"#));
        // A high surrogate followed by something that is not its low half.
        assert_eq!(repaired(r#"["\uD83D\u0041"]"#).as_deref(), Some(r#"["\uFFFD\u0041"]"#));
        let v: serde_json::Value = serde_json::from_str(&repaired(r#"{"a":"x\uD800y"}"#).unwrap()).unwrap();
        assert_eq!(v["a"], "x\u{FFFD}y");
    }

    #[test]
    fn pairs_escaped_backslashes_and_plain_text_are_left_alone() {
        assert_eq!(repaired(r#"{"a":"\uD83D\uDE00 ok"}"#), None);
        assert_eq!(repaired(r#"{"a":"\\uD800 is text"}"#), None, "an escaped backslash, then text");
        assert_eq!(repaired(r#"{"a":"quote \" and [ { inside"}"#), None);
        assert_eq!(repaired("not json at all"), None);
    }

    #[test]
    fn values_nested_too_deep_become_a_marker_and_the_rest_stays() {
        let deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
        let body = format!(r#"{{"ok":[1,2],"deep":{deep},"after":"x"}}"#);
        assert!(serde_json::from_str::<serde_json::Value>(&body).is_err(), "too deep for serde_json as it is");
        let fixed = repaired(&body).unwrap();
        let v: serde_json::Value = serde_json::from_str(&fixed).unwrap();
        assert_eq!(v["ok"], serde_json::json!([1, 2]));
        assert_eq!(v["after"], "x");
        // The root object is level 1 and "deep" level 2: levels up to 64 are kept, and the
        // marker stands where level 65 began.
        let mut at = &v["deep"];
        for _ in 0..MAX_DEPTH - 2 {
            at = &at[0];
        }
        assert_eq!(at[0], TOO_DEEP);
    }

    #[test]
    fn brackets_inside_strings_do_not_count_as_depth() {
        let body = format!(r#"{{"a":"{}"}}"#, "[".repeat(500));
        assert_eq!(repaired(&body), None);
    }
}
