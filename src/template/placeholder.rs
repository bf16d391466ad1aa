//! Placeholders: finding `$(params.NAME)` in a template's strings and substituting values for
//! them. Pure; shared by validation ([`super::spec`]) and rendering ([`super::render`]).

use std::collections::BTreeMap;

use serde_json::Value;

/// The prefix and suffix of a placeholder: `$(params.NAME)`.
pub const PLACEHOLDER_OPEN: &str = "$(params.";

/// Names of every `$(params.NAME)` in `s`, in order.
pub fn placeholders(s: &str) -> impl Iterator<Item = &str> {
    let mut rest = s;
    std::iter::from_fn(move || {
        loop {
            let start = rest.find(PLACEHOLDER_OPEN)?;
            let after = &rest[start + PLACEHOLDER_OPEN.len()..];
            let Some(end) = after.find(')') else {
                rest = "";
                return None;
            };
            let name = &after[..end];
            rest = &after[end + 1..];
            if is_parameter_name(name) {
                return Some(name);
            }
        }
    })
}

/// Parameter names: a letter or underscore, then letters, digits, `_`, `-` or `.`; at most 63.
pub fn is_parameter_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && name.len() <= 63
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// Calls `f` on every string value (not key) of `value`.
pub fn for_each_string(value: &Value, f: &mut impl FnMut(&str)) {
    match value {
        Value::String(s) => f(s),
        Value::Array(items) => items.iter().for_each(|v| for_each_string(v, f)),
        Value::Object(map) => map.values().for_each(|v| for_each_string(v, f)),
        _ => {}
    }
}

/// Replaces every `$(params.NAME)` inside string values with its value. Values are inserted
/// verbatim and never re-scanned, so a value holding a placeholder stays literal.
pub fn substitute(value: &mut Value, params: &BTreeMap<String, String>) {
    match value {
        Value::String(s) if s.contains(PLACEHOLDER_OPEN) => {
            let mut out = String::with_capacity(s.len());
            let mut rest = s.as_str();
            for name in placeholders(s) {
                let token = format!("{PLACEHOLDER_OPEN}{name})");
                if let Some(at) = rest.find(&token) {
                    out.push_str(&rest[..at]);
                    out.push_str(params.get(name).map(String::as_str).unwrap_or_default());
                    rest = &rest[at + token.len()..];
                }
            }
            out.push_str(rest);
            *s = out;
        }
        Value::Array(items) => items.iter_mut().for_each(|v| substitute(v, params)),
        Value::Object(map) => map.values_mut().for_each(|v| substitute(v, params)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_found_only_when_well_formed() {
        let found: Vec<_> =
            placeholders("a $(params.x) $(params.) $(params.y-z)$(params.bad name) $(params.open").collect();
        assert_eq!(found, vec!["x", "y-z"]);
    }
}
