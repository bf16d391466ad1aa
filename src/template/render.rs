//! Rendering: a template plus a request's parameters, env and labels give a Job manifest.
//!
//! Placeholders are replaced inside string values of the already-parsed manifest, so no value,
//! whatever YAML or JSON it holds, can change the manifest's structure. Where Kubernetes itself
//! expands `$(VAR)` (command, args, env values, subPathExpr), values are escaped so that the
//! process sees exactly the bytes sent; the template's own text is left as its author wrote it.

use std::collections::BTreeMap;

use serde_json::Value;

use super::{
    Template,
    placeholder::{escape_expansion, substitute_manifest},
};
use crate::{api::ParamValue, keys};

/// What a request contributes to the manifest.
#[derive(Debug, Clone, Copy)]
pub struct RenderInput<'a> {
    pub params: &'a BTreeMap<String, ParamValue>,
    /// The caller's variables: only those the template's interface allows.
    pub env: &'a BTreeMap<String, String>,
    /// Variables the launcher itself sets (a raw SQS body's `MESSAGE_BODY` and `MESSAGE_ID`, the
    /// queue URL in scale mode): not the caller's to choose, so not checked against the interface.
    pub launcher_env: &'a BTreeMap<String, String>,
    pub labels: &'a BTreeMap<String, String>,
}

/// Longest part of a rejected value quoted back in an error: values reach logs and answers.
pub const QUOTED_VALUE_CHARS: usize = 64;

/// `value`'s first [`QUOTED_VALUE_CHARS`] characters, with a note of what was left out.
pub fn quote_prefix(value: &str) -> String {
    let mut chars = value.chars();
    let head: String = chars.by_ref().take(QUOTED_VALUE_CHARS).collect();
    match chars.count() {
        0 => format!("{head:?}"),
        rest => format!("{head:?} (and {rest} more characters)"),
    }
}

/// Why a request cannot be rendered: always the caller's to fix (HTTP 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    #[error("params.{name}: template {template} declares no such parameter (declared: {declared})")]
    UnknownParameter { template: String, name: String, declared: String },
    #[error("params.{0}: required, and the request gives no value")]
    MissingParameter(String),
    #[error("params.{name}: {} does not match the pattern {pattern:?}", quote_prefix(value))]
    PatternMismatch { name: String, value: String, pattern: String },
    #[error("env.{}: not a valid environment variable name (a letter or _, then letters, digits or _)", quote_prefix(.0))]
    InvalidEnvName(String),
    #[error("env.{name}: the template does not let callers set this variable; it allows {allowed}")]
    EnvNotAllowed { name: String, allowed: String },
    #[error("labels.{key}: {problem}")]
    InvalidLabel { key: String, problem: String },
}

impl Template {
    /// The Job manifest for `input`, without the launcher's own name, labels and annotations.
    pub fn render(&self, input: RenderInput<'_>) -> Result<Value, RenderError> {
        let values = self.resolve_params(input.params)?;
        check_env(self, input.env)?;
        for (key, value) in input.labels {
            check_label(key, value)?;
        }
        let mut manifest = self.manifest.clone();
        let escaped = values.iter().map(|(k, v)| (k.clone(), escape_expansion(v))).collect();
        substitute_manifest(&mut manifest, &values, &escaped);
        let targets = self.env_targets();
        set_env(&mut manifest, &targets, input.launcher_env);
        set_env(&mut manifest, &targets, input.env);
        for path in ["/metadata", "/spec/template/metadata"] {
            set_labels(&mut manifest, path, input.labels);
        }
        Ok(manifest)
    }

    /// Each declared parameter's value: the request's, else its default, else empty; checked
    /// against its pattern.
    fn resolve_params(&self, given: &BTreeMap<String, ParamValue>) -> Result<BTreeMap<String, String>, RenderError> {
        if let Some(unknown) = given.keys().find(|k| !self.parameters.iter().any(|p| &p.name == *k)) {
            let declared: Vec<&str> = self.parameters.iter().map(|p| p.name.as_str()).collect();
            return Err(RenderError::UnknownParameter {
                template: self.name.clone(),
                name: unknown.clone(),
                declared: if declared.is_empty() { "none".into() } else { declared.join(", ") },
            });
        }
        self.parameters
            .iter()
            .map(|p| {
                let value = match (given.get(&p.name), &p.default) {
                    (Some(v), _) => v.to_string(),
                    (None, Some(default)) => default.clone(),
                    (None, None) if p.required => return Err(RenderError::MissingParameter(p.name.clone())),
                    (None, None) => String::new(),
                };
                if let (Some(matcher), Some(pattern)) = (&p.matcher, &p.pattern)
                    && !matcher.is_match(&value)
                {
                    return Err(RenderError::PatternMismatch { name: p.name.clone(), value, pattern: pattern.clone() });
                }
                Ok((p.name.clone(), value))
            })
            .collect()
    }
}

pub(crate) fn is_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn check_env(template: &Template, env: &BTreeMap<String, String>) -> Result<(), RenderError> {
    for name in env.keys() {
        if !is_env_name(name) {
            return Err(RenderError::InvalidEnvName(name.clone()));
        }
        let allowed = match &template.allowed_env {
            Some(allowed) => allowed.is_match(name),
            None => template.settable_env.contains(name),
        };
        if !allowed {
            return Err(RenderError::EnvNotAllowed { name: name.clone(), allowed: template.env_interface() });
        }
    }
    Ok(())
}

/// Sets `env` on the named containers, replacing a variable of the same name (value or
/// valueFrom). Values are escaped: Kubernetes expands `env[].value`.
pub(crate) fn set_env(manifest: &mut Value, containers: &[String], env: &BTreeMap<String, String>) {
    if env.is_empty() {
        return;
    }
    let Some(list) = manifest.pointer_mut("/spec/template/spec/containers").and_then(Value::as_array_mut) else {
        return;
    };
    for container in list.iter_mut() {
        let named = container.get("name").and_then(Value::as_str).is_some_and(|n| containers.iter().any(|c| c == n));
        let Some(obj) = container.as_object_mut().filter(|_| named) else { continue };
        let vars = obj.entry("env").or_insert_with(|| Value::Array(Vec::new()));
        if !vars.is_array() {
            *vars = Value::Array(Vec::new());
        }
        let Some(vars) = vars.as_array_mut() else { continue };
        for (name, value) in env {
            let entry = serde_json::json!({ "name": name, "value": escape_expansion(value) });
            match vars.iter_mut().find(|v| v.get("name").and_then(Value::as_str) == Some(name)) {
                Some(existing) => *existing = entry,
                None => vars.push(entry),
            }
        }
    }
}

fn set_labels(manifest: &mut Value, path: &str, labels: &BTreeMap<String, String>) {
    if labels.is_empty() {
        return;
    }
    if let Some(meta) = ensure_object(manifest, path) {
        let target = meta.entry("labels").or_insert_with(|| Value::Object(Default::default()));
        if let Some(target) = target.as_object_mut() {
            for (k, v) in labels {
                target.insert(k.clone(), Value::String(v.clone()));
            }
        }
    }
}

/// The object at `path` (a JSON pointer of object keys), created where missing.
pub(crate) fn ensure_object<'a>(value: &'a mut Value, path: &str) -> Option<&'a mut serde_json::Map<String, Value>> {
    let mut current = value;
    for key in path.split('/').skip(1) {
        let obj = current.as_object_mut()?;
        current = obj.entry(key).or_insert_with(|| Value::Object(Default::default()));
        if current.is_null() {
            *current = Value::Object(Default::default());
        }
    }
    current.as_object_mut()
}

/// Label keys a caller may not set: this project's own, those Kubernetes and its controllers own,
/// and those the launcher's own Service selects on (`app.kubernetes.io/` is the users' own, but
/// for `managed-by`, `name` and `instance`).
pub fn is_reserved_label(key: &str) -> bool {
    let prefix = key.rsplit_once('/').map(|(p, _)| p).unwrap_or("");
    let kubernetes_owned =
        ["kubernetes.io", "k8s.io"].iter().any(|domain| prefix == *domain || prefix.ends_with(&format!(".{domain}")));
    key.starts_with(keys::PREFIX)
        || key == keys::MANAGED_BY
        // The chart's Service and PodDisruptionBudget select on these: a caller's pods must never
        // join the launcher's Service and receive its clients' requests and tokens.
        || key == "app.kubernetes.io/name"
        || key == "app.kubernetes.io/instance"
        || matches!(key, "job-name" | "controller-uid")
        || (kubernetes_owned && prefix != "app.kubernetes.io")
}

/// Kubernetes label syntax: `[prefix/]name`, name and value at most 63 characters of
/// `[A-Za-z0-9._-]` beginning and ending alphanumeric (a value may be empty).
pub fn check_label(key: &str, value: &str) -> Result<(), RenderError> {
    let invalid = |problem: String| RenderError::InvalidLabel { key: key.to_string(), problem };
    if is_reserved_label(key) {
        return Err(invalid("reserved for the launcher and Kubernetes".into()));
    }
    let (prefix, name) = match key.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if let Some(prefix) = prefix
        && (prefix.is_empty()
            || prefix.len() > 253
            || !prefix
                .split('.')
                .all(|part| is_label_segment(part, false) && !part.contains('_') && part.to_ascii_lowercase() == part))
    {
        return Err(invalid("the prefix must be a DNS subdomain".into()));
    }
    if !is_label_segment(name, false) {
        return Err(invalid("a key's name is 1-63 characters of [A-Za-z0-9._-], alphanumeric at both ends".into()));
    }
    if !is_label_segment(value, true) {
        return Err(invalid(format!(
            "value {value:?}: at most 63 characters of [A-Za-z0-9._-], alphanumeric at both ends"
        )));
    }
    Ok(())
}

fn is_label_segment(s: &str, may_be_empty: bool) -> bool {
    if s.is_empty() {
        return may_be_empty;
    }
    let bytes = s.as_bytes();
    s.len() <= 63
        && bytes[0].is_ascii_alphanumeric()
        && bytes[bytes.len() - 1].is_ascii_alphanumeric()
        && bytes.iter().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{api::TemplateSource, template::Template};

    const TEMPLATE: &str = r#"apiVersion: batch/v1
kind: Job
metadata:
  labels:
    app: demo
  annotations:
    job-launcher.dev/parameters: |
      - name: greeting
        default: hello
      - name: count
        pattern: '[0-9]+'
        default: "1"
      - name: target
        required: true
    job-launcher.dev/allowed-env: '(APP|MESSAGE)_[A-Z_]+'
spec:
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: main
        image: busybox
        command: ["sh", "-c", "echo $(params.greeting) $(params.target), $(params.count) times"]
        env:
        - name: APP_MODE
          value: template
        - name: APP_SECRET
          valueFrom:
            secretKeyRef: {name: s, key: k}
      - name: sidecar
        image: busybox
"#;

    fn template() -> Template {
        Template::parse("demo", TemplateSource { config_map: "cm".into(), key: "demo.yaml".into() }, TEMPLATE)
            .expect("valid template")
    }

    fn params(pairs: &[(&str, ParamValue)]) -> BTreeMap<String, ParamValue> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()
    }

    fn strings(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn render(
        p: &BTreeMap<String, ParamValue>,
        env: &BTreeMap<String, String>,
        labels: &BTreeMap<String, String>,
    ) -> Result<Value, RenderError> {
        template().render(RenderInput { params: p, env, launcher_env: &BTreeMap::new(), labels })
    }

    fn command(manifest: &Value) -> &str {
        manifest.pointer("/spec/template/spec/containers/0/command/2").and_then(Value::as_str).unwrap_or_default()
    }

    #[test]
    fn parameters_fill_placeholders_with_defaults_for_the_rest() {
        let out = render(&params(&[("target", ParamValue::String("world".into()))]), &strings(&[]), &strings(&[]))
            .expect("render");
        assert_eq!(command(&out), "echo hello world, 1 times");
    }

    #[test]
    fn numbers_and_booleans_are_written_as_text() {
        let p = params(&[("target", ParamValue::Bool(true)), ("count", ParamValue::Number(7.into()))]);
        let out = render(&p, &strings(&[]), &strings(&[])).expect("render");
        assert_eq!(command(&out), "echo hello true, 7 times");
    }

    #[test]
    fn a_value_with_yaml_json_quotes_and_newlines_stays_inside_its_string() {
        let nasty = "x\"}, {\"name\": \"evil\"}]\n---\nkind: Pod\n  - $(params.count) 'q' \\n";
        let out = render(&params(&[("target", ParamValue::String(nasty.into()))]), &strings(&[]), &strings(&[]))
            .expect("render");
        assert_eq!(command(&out), format!("echo hello {}, 1 times", nasty.replace('$', "$$")), "escaped, verbatim");
        let containers = out.pointer("/spec/template/spec/containers").and_then(Value::as_array).expect("containers");
        assert_eq!(containers.len(), 2, "no container was added");
        assert_eq!(out.get("kind"), Some(&Value::from("Job")));
    }

    #[test]
    fn a_missing_required_parameter_is_named() {
        let err = render(&params(&[]), &strings(&[]), &strings(&[])).unwrap_err();
        assert_eq!(err, RenderError::MissingParameter("target".into()));
    }

    #[test]
    fn an_undeclared_parameter_is_refused_with_the_declared_ones() {
        let p = params(&[("target", ParamValue::String("w".into())), ("colour", ParamValue::String("red".into()))]);
        let err = render(&p, &strings(&[]), &strings(&[])).unwrap_err();
        assert!(
            matches!(&err, RenderError::UnknownParameter { name, declared, .. } if name == "colour" && declared == "greeting, count, target")
        );
    }

    #[test]
    fn a_value_must_match_the_whole_pattern() {
        let p = params(&[("target", ParamValue::String("w".into())), ("count", ParamValue::String("12x".into()))]);
        assert!(matches!(render(&p, &strings(&[]), &strings(&[])), Err(RenderError::PatternMismatch { .. })));
    }

    #[test]
    fn env_overrides_the_template_variable_of_the_same_name_on_the_first_container() {
        let p = params(&[("target", ParamValue::String("w".into()))]);
        let out = render(
            &p,
            &strings(&[("APP_MODE", "request"), ("APP_SECRET", "plain"), ("MESSAGE_BODY", "{}")]),
            &strings(&[]),
        )
        .expect("render");
        let env = out.pointer("/spec/template/spec/containers/0/env").and_then(Value::as_array).expect("env");
        let names: Vec<&str> = env.iter().filter_map(|e| e.get("name").and_then(Value::as_str)).collect();
        assert_eq!(names, vec!["APP_MODE", "APP_SECRET", "MESSAGE_BODY"]);
        assert_eq!(env[0], serde_json::json!({"name": "APP_MODE", "value": "request"}));
        assert_eq!(
            env[1],
            serde_json::json!({"name": "APP_SECRET", "value": "plain"}),
            "valueFrom is replaced where allowed-env names it"
        );
        assert!(out.pointer("/spec/template/spec/containers/1/env").is_none(), "the sidecar gets nothing");
    }

    #[test]
    fn env_names_are_checked_against_syntax_and_the_templates_allow_list() {
        let p = params(&[("target", ParamValue::String("w".into()))]);
        assert_eq!(
            render(&p, &strings(&[("1BAD", "x")]), &strings(&[])).unwrap_err(),
            RenderError::InvalidEnvName("1BAD".into())
        );
        let refused = render(&p, &strings(&[("PATH", "/evil")]), &strings(&[])).unwrap_err();
        assert!(matches!(&refused, RenderError::EnvNotAllowed { name, .. } if name == "PATH"), "{refused}");
        assert!(refused.to_string().contains("names matching \"(APP|MESSAGE)_[A-Z_]+\""), "{refused}");
    }

    const WITHOUT_ALLOWED_ENV: &str = r#"apiVersion: batch/v1
kind: Job
spec:
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: main
        image: busybox
        env:
        - name: MODE
          value: fast
        - name: TOKEN
          valueFrom:
            secretKeyRef: {name: s, key: k}
"#;

    #[test]
    fn without_allowed_env_only_variables_declared_with_a_value_may_be_set() {
        let t =
            Template::parse("t", TemplateSource { config_map: "cm".into(), key: "t.yaml".into() }, WITHOUT_ALLOWED_ENV)
                .expect("valid");
        let (no_params, none) = (BTreeMap::new(), BTreeMap::new());
        let render = |env: &[(&str, &str)]| {
            t.render(RenderInput { params: &no_params, env: &strings(env), launcher_env: &none, labels: &none })
        };
        assert!(render(&[("MODE", "slow")]).is_ok(), "a declared value is the template's interface");
        for name in ["LD_PRELOAD", "BASH_ENV", "TOKEN"] {
            let refused = render(&[(name, "x")]).unwrap_err();
            assert!(matches!(&refused, RenderError::EnvNotAllowed { name: n, .. } if n == name), "{refused}");
            assert!(refused.to_string().contains("declares with a value: MODE"), "{refused}");
        }
        // The launcher's own variables are not the caller's: they are always set.
        let launcher_env = strings(&[("MESSAGE_BODY", "{\"a\": \"$(TOKEN)\"}")]);
        let out = t
            .render(RenderInput { params: &no_params, env: &none, launcher_env: &launcher_env, labels: &none })
            .expect("render");
        let env = out.pointer("/spec/template/spec/containers/0/env/2").expect("MESSAGE_BODY");
        assert_eq!(env, &serde_json::json!({"name": "MESSAGE_BODY", "value": "{\"a\": \"$$(TOKEN)\"}"}), "escaped");
    }

    #[test]
    fn values_are_escaped_where_kubernetes_expands_and_only_there() {
        let p = params(&[("target", ParamValue::String("$(APP_SECRET) $$".into()))]);
        let out = render(&p, &strings(&[("APP_MODE", "$(HOME)")]), &strings(&[])).expect("render");
        assert_eq!(command(&out), "echo hello $$(APP_SECRET) $$$$, 1 times", "the template's own text is kept");
        assert_eq!(
            out.pointer("/spec/template/spec/containers/0/env/0/value"),
            Some(&Value::from("$$(HOME)")),
            "env values are escaped too"
        );
    }

    #[test]
    fn a_rejected_value_is_quoted_only_in_part() {
        let long = "x".repeat(1000);
        let p = params(&[("target", ParamValue::String("w".into())), ("count", ParamValue::String(long))]);
        let message = render(&p, &strings(&[]), &strings(&[])).unwrap_err().to_string();
        assert!(message.contains(&format!("{:?} (and 936 more characters)", "x".repeat(64))), "{message}");
        assert!(message.len() < 300, "{message}");
    }

    #[test]
    fn labels_go_on_the_job_and_its_pods() {
        let p = params(&[("target", ParamValue::String("w".into()))]);
        let out =
            render(&p, &strings(&[]), &strings(&[("team", "data"), ("example.com/tier", "batch")])).expect("render");
        for path in ["/metadata/labels", "/spec/template/metadata/labels"] {
            let labels = out.pointer(path).expect("labels");
            assert_eq!(labels.get("team"), Some(&Value::from("data")), "{path}");
            assert_eq!(labels.get("example.com/tier"), Some(&Value::from("batch")), "{path}");
        }
        assert_eq!(out.pointer("/metadata/labels/app"), Some(&Value::from("demo")), "template labels stay");
    }

    #[test]
    fn reserved_and_malformed_labels_are_refused() {
        for key in [
            "job-launcher.dev/source",
            "app.kubernetes.io/managed-by",
            "batch.kubernetes.io/job-name",
            "job-name",
            "-x",
            "a/b/c",
            "Bad_Prefix.io/x",
            "",
        ] {
            assert!(check_label(key, "v").is_err(), "{key:?} should be refused");
        }
        assert!(check_label("ok", "has space").is_err());
        assert!(check_label("ok", &"v".repeat(64)).is_err());
        assert!(check_label("example.com/ok", "").is_ok());
        for selected in ["app.kubernetes.io/name", "app.kubernetes.io/instance"] {
            assert!(check_label(selected, "x").is_err(), "the launcher's Service selects on {selected}");
        }
        assert!(check_label("app.kubernetes.io/component", "x").is_ok(), "the rest of app.kubernetes.io is the users'");
    }

    #[test]
    fn a_value_holding_a_placeholder_is_not_expanded_again() {
        let p = params(&[("target", ParamValue::String("$(params.greeting)".into()))]);
        let out = render(&p, &strings(&[]), &strings(&[])).expect("render");
        assert_eq!(command(&out), "echo hello $$(params.greeting), 1 times", "escaped for Kubernetes, not substituted");
    }
}
