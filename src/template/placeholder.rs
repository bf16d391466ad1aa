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

/// `s` with every `$(params.NAME)` replaced by its value; None when `s` holds no placeholder.
/// Values are inserted as given and never re-scanned, so a value holding a placeholder stays
/// literal.
pub fn substitute_str(s: &str, params: &BTreeMap<String, String>) -> Option<String> {
    if !s.contains(PLACEHOLDER_OPEN) {
        return None;
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    for name in placeholders(s) {
        let token = format!("{PLACEHOLDER_OPEN}{name})");
        if let Some(at) = rest.find(&token) {
            out.push_str(&rest[..at]);
            out.push_str(params.get(name).map(String::as_str).unwrap_or_default());
            rest = &rest[at + token.len()..];
        }
    }
    out.push_str(rest);
    Some(out)
}

/// Replaces every `$(params.NAME)` inside the string values of `value` (not its keys).
pub fn substitute(value: &mut Value, params: &BTreeMap<String, String>) {
    match value {
        Value::String(s) => {
            if let Some(out) = substitute_str(s, params) {
                *s = out;
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| substitute(v, params)),
        Value::Object(map) => map.values_mut().for_each(|v| substitute(v, params)),
        _ => {}
    }
}

/// A value made to survive Kubernetes' own `$(VAR)` expansion unchanged: every `$` doubled, which
/// expansion turns back into one. The fields Kubernetes expands are listed by
/// [`is_expanded_field`].
pub fn escape_expansion(value: &str) -> String {
    value.replace('$', "$$")
}

/// Whether Kubernetes expands `$(VAR)` in the string at `path` of a Job manifest (object keys,
/// `#` for an array index): a container's or init container's `command` and `args` items, `env`
/// values and `volumeMounts` `subPathExpr`.
pub fn is_expanded_field(path: &[&str]) -> bool {
    match path {
        ["spec", "template", "spec", "containers" | "initContainers", "#", rest @ ..] => {
            matches!(rest, ["command" | "args", "#"] | ["env", "#", "value"] | ["volumeMounts", "#", "subPathExpr"])
        }
        _ => false,
    }
}

/// The object keys [`is_expanded_field`] looks at; other keys stand as `?` in a path.
const PATH_KEYS: [&str; 10] = [
    "spec",
    "template",
    "containers",
    "initContainers",
    "command",
    "args",
    "env",
    "value",
    "volumeMounts",
    "subPathExpr",
];

/// Replaces placeholders in the string values of a Job manifest: with `escaped` values in the
/// fields Kubernetes expands, with `raw` values everywhere else.
pub fn substitute_manifest(manifest: &mut Value, raw: &BTreeMap<String, String>, escaped: &BTreeMap<String, String>) {
    fn walk(
        value: &mut Value,
        path: &mut Vec<&'static str>,
        raw: &BTreeMap<String, String>,
        escaped: &BTreeMap<String, String>,
    ) {
        match value {
            Value::String(s) => {
                let params = if is_expanded_field(path) { escaped } else { raw };
                if let Some(out) = substitute_str(s, params) {
                    *s = out;
                }
            }
            Value::Array(items) => {
                for item in items {
                    path.push("#");
                    walk(item, path, raw, escaped);
                    path.pop();
                }
            }
            Value::Object(map) => {
                for (key, item) in map.iter_mut() {
                    path.push(PATH_KEYS.iter().find(|k| **k == key).copied().unwrap_or("?"));
                    walk(item, path, raw, escaped);
                    path.pop();
                }
            }
            _ => {}
        }
    }
    walk(manifest, &mut Vec::new(), raw, escaped);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_fields_kubernetes_expands_are_expanded_fields() {
        fn path(p: &str) -> Vec<&str> {
            p.split('/').collect()
        }
        for expanded in [
            "spec/template/spec/containers/#/command/#",
            "spec/template/spec/initContainers/#/args/#",
            "spec/template/spec/containers/#/env/#/value",
            "spec/template/spec/containers/#/volumeMounts/#/subPathExpr",
        ] {
            assert!(is_expanded_field(&path(expanded)), "{expanded}");
        }
        for literal in [
            "spec/template/spec/containers/#/image",
            "spec/template/spec/containers/#/env/#/name",
            "spec/template/?/?/?",
            "spec/template/spec/containers/#/command",
            "spec/template/spec/containers/#/volumeMounts/#/subPath",
        ] {
            assert!(!is_expanded_field(&path(literal)), "{literal}");
        }
    }

    #[test]
    fn escaping_doubles_every_dollar() {
        assert_eq!(escape_expansion("$(SECRET) $$ a$"), "$$(SECRET) $$$$ a$$");
        assert_eq!(escape_expansion("plain"), "plain");
    }

    #[test]
    fn placeholders_are_found_only_when_well_formed() {
        let found: Vec<_> =
            placeholders("a $(params.x) $(params.) $(params.y-z)$(params.bad name) $(params.open").collect();
        assert_eq!(found, vec!["x", "y-z"]);
    }
}
