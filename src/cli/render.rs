//! Offline rendering: a template file and a request become the Job manifest the launcher would
//! create, with the launcher's own pure code (template parsing and validation, rendering, naming,
//! labels and annotations). No server and no cluster: for template authors' CI.

use serde_json::Value;

use crate::{
    api::{LaunchRequest, TemplateSource},
    launch::{JobSettings, Origin, Source, prepare},
    template::{Template, store::template_name},
};

/// Where the template comes from and what the launcher would know that a file does not say.
#[derive(Debug, Clone)]
pub struct OfflineTemplate<'a> {
    /// The template's text (YAML, or JSON when `key` ends in `.json`).
    pub text: &'a str,
    /// The ConfigMap key it would be kept under (a file's name).
    pub key: &'a str,
    /// The template's name; by default the key without its extension.
    pub name: Option<&'a str>,
    /// The launcher's namespace and instance, and the caller: keyed Job names depend on them.
    pub namespace: &'a str,
    pub instance: &'a str,
    pub caller: &'a str,
    /// The launcher's --default-ttl-seconds.
    pub default_ttl_seconds: i64,
}

/// Why a file does not render: its template is invalid, or the request does not fit it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OfflineError {
    #[error("template {name} ({key}) is invalid: {error}")]
    InvalidTemplate { name: String, key: String, error: String },
    #[error("the request does not fit template {name}: {error}")]
    InvalidRequest { name: String, error: String },
}

/// The manifest a launch of `request` would create from `template`, as a launcher without a
/// global `--max-active` would make it (a template's own `max-active` does queue it).
pub fn render_offline(template: &OfflineTemplate<'_>, request: &LaunchRequest) -> Result<Value, OfflineError> {
    let name = template
        .name
        .map(String::from)
        .or_else(|| template_name(template.key).map(String::from))
        .unwrap_or_else(|| template.key.to_string());
    let source = TemplateSource { config_map: "(file)".into(), key: template.key.to_string() };
    let parsed = Template::parse(&name, source, template.text).map_err(|e| OfflineError::InvalidTemplate {
        name: name.clone(),
        key: template.key.to_string(),
        error: e.to_string(),
    })?;
    let origin = Origin::new(Source::Cli, template.caller);
    let notices = crate::launch::NoticePolicy::default();
    let job = JobSettings {
        notices: &notices,
        namespace: template.namespace,
        instance: template.instance,
        default_ttl_seconds: template.default_ttl_seconds,
        globally_capped: false,
    };
    prepare(&parsed, request, &origin, &job)
        .map(|prepared| prepared.manifest)
        .map_err(|e| OfflineError::InvalidRequest { name: name.clone(), error: e.to_string() })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::api::ParamValue;

    const GREETING: &str = include_str!("../../examples/greeting.yaml");

    fn offline(text: &str) -> OfflineTemplate<'_> {
        OfflineTemplate {
            text,
            key: "greeting.yaml",
            name: None,
            namespace: "default",
            instance: "default",
            caller: "anonymous",
            default_ttl_seconds: 3600,
        }
    }

    fn request(params: &[(&str, ParamValue)]) -> LaunchRequest {
        LaunchRequest { params: params.iter().map(|(k, v)| (k.to_string(), v.clone())).collect(), ..Default::default() }
    }

    #[test]
    fn a_file_renders_as_the_launcher_would_name_and_label_it() {
        let mut req = request(&[("name", ParamValue::String("Ada".into())), ("times", ParamValue::Number(2.into()))]);
        req.idempotency_key = Some("k1".into());
        req.labels = BTreeMap::from([("team".into(), "data".into())]);
        let manifest = render_offline(&offline(GREETING), &req).expect("renders");
        let name = manifest.pointer("/metadata/name").and_then(Value::as_str).expect("name");
        assert_eq!(name, crate::launch::naming::keyed_name("default", "default", "anonymous", "k1"));
        assert_eq!(manifest.pointer("/metadata/labels/job-launcher.dev~1template"), Some(&Value::from("greeting")));
        assert_eq!(manifest.pointer("/metadata/labels/job-launcher.dev~1source"), Some(&Value::from("cli")));
        assert_eq!(manifest.pointer("/metadata/labels/team"), Some(&Value::from("data")));
        assert_eq!(manifest.pointer("/spec/ttlSecondsAfterFinished"), Some(&Value::from(3600)));
        let env = manifest.pointer("/spec/template/spec/containers/0/env").expect("env");
        assert_eq!(env[0], serde_json::json!({"name": "NAME", "value": "Ada"}));
        assert_eq!(env[1], serde_json::json!({"name": "TIMES", "value": "2"}));
        let again = render_offline(&offline(GREETING), &req).expect("renders");
        assert_eq!(again.pointer("/metadata/name"), manifest.pointer("/metadata/name"), "keyed names are stable");
    }

    #[test]
    fn a_missing_required_parameter_and_an_invalid_template_are_named() {
        let missing = render_offline(&offline(GREETING), &request(&[])).unwrap_err();
        assert!(missing.to_string().contains("params.name: required"), "{missing}");
        let broken = GREETING.replace("restartPolicy: Never", "restartPolicy: Always");
        let invalid = render_offline(&offline(&broken), &request(&[])).unwrap_err();
        assert!(matches!(&invalid, OfflineError::InvalidTemplate { .. }), "{invalid}");
        assert!(invalid.to_string().contains("restartPolicy"), "{invalid}");
        let undeclared = GREETING.replace("$(params.times)", "$(params.count)");
        assert!(render_offline(&offline(&undeclared), &request(&[])).unwrap_err().to_string().contains("params.count"));
    }

    #[test]
    fn the_name_comes_from_the_key_unless_given() {
        let req = request(&[("name", ParamValue::String("Ada".into()))]);
        let json_key = OfflineTemplate { key: "other.yml", ..offline(GREETING) };
        let manifest = render_offline(&json_key, &req).expect("renders");
        assert!(manifest.pointer("/metadata/name").and_then(Value::as_str).is_some_and(|n| n.starts_with("other-")));
        let named = OfflineTemplate { name: Some("hello"), ..offline(GREETING) };
        let manifest = render_offline(&named, &req).expect("renders");
        assert_eq!(manifest.pointer("/metadata/labels/job-launcher.dev~1template"), Some(&Value::from("hello")));
    }
}
