//! A Job template: parsed from a ConfigMap value, validated once, kept as JSON.
//!
//! Pure: no Kubernetes client, only the manifest's own types for validation.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::batch::v1::Job;
use regex::Regex;
use serde::Deserialize;
use serde_json::Value;

use super::placeholder::{for_each_string, is_parameter_name, placeholders, substitute};
use crate::{
    api::{ParamValue, TemplateSource},
    keys,
};

/// A declared parameter, from the template's `job-launcher.dev/parameters` annotation.
#[derive(Debug, Clone)]
pub struct Parameter {
    pub name: String,
    pub required: bool,
    pub default: Option<String>,
    pub pattern: Option<String>,
    /// `pattern` anchored to the whole value.
    pub(crate) matcher: Option<Regex>,
    pub description: Option<String>,
}

/// A valid template, ready to render.
#[derive(Debug, Clone)]
pub struct Template {
    pub name: String,
    pub source: TemplateSource,
    /// The Job manifest, without name, generateName, namespace or this project's annotations.
    pub(crate) manifest: Value,
    pub parameters: Vec<Parameter>,
    /// Containers that receive a request's env; empty means the first container.
    pub(crate) env_containers: Vec<String>,
    pub(crate) allowed_env: Option<Regex>,
    /// Without `allowed-env`: the variables a caller may set, those the target containers declare
    /// with a literal `value` (and none with `valueFrom`).
    pub(crate) settable_env: BTreeSet<String>,
    /// The per-template admission cap, `job-launcher.dev/max-active`.
    pub max_active: Option<u32>,
    /// Risks in an otherwise valid template, shown in its status.
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("not valid YAML or JSON: {0}")]
    Syntax(String),
    #[error("not a batch/v1 Job: {0}")]
    NotAJob(String),
    #[error("the Job has no containers")]
    NoContainers,
    #[error("restartPolicy must be Never or OnFailure for a Job, not {0:?}")]
    RestartPolicy(String),
    #[error("annotation {annotation}: {problem}")]
    Annotation { annotation: &'static str, problem: String },
    #[error("placeholder $(params.{0}) names no declared parameter")]
    UndeclaredPlaceholder(String),
    #[error("parameter {name}: {problem}")]
    Parameter { name: String, problem: String },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ParameterDecl {
    name: String,
    #[serde(default)]
    required: bool,
    #[serde(default)]
    default: Option<ScalarString>,
    #[serde(default)]
    pattern: Option<String>,
    #[serde(default)]
    description: Option<String>,
}

/// A YAML scalar read as a string: `default: 3` and `default: "3"` mean the same.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum ScalarString {
    String(String),
    Int(i64),
    Float(f64),
    Bool(bool),
}

impl ScalarString {
    fn into_string(self) -> String {
        match self {
            Self::String(s) => s,
            Self::Int(i) => i.to_string(),
            Self::Float(f) => f.to_string(),
            Self::Bool(b) => b.to_string(),
        }
    }
}

/// Compiles `pattern` so that it must match a whole value.
fn anchored(pattern: &str) -> Result<Regex, regex::Error> {
    Regex::new(&format!("^(?:{pattern})$"))
}

impl Template {
    /// Parses and validates the template held under `source.key`. The key's extension decides
    /// the syntax: `.json` is JSON, anything else YAML.
    pub fn parse(name: &str, source: TemplateSource, text: &str) -> Result<Self, TemplateError> {
        let mut manifest: Value = if source.key.ends_with(".json") {
            serde_json::from_str(text).map_err(|e| TemplateError::Syntax(e.to_string()))?
        } else {
            serde_saphyr::from_str(text).map_err(|e| TemplateError::Syntax(e.to_string()))?
        };
        check_kind(&manifest)?;
        let job: Job = serde_json::from_value(manifest.clone()).map_err(|e| TemplateError::NotAJob(e.to_string()))?;
        let pod = job.spec.as_ref().and_then(|s| s.template.spec.as_ref()).ok_or(TemplateError::NoContainers)?;
        if pod.containers.is_empty() {
            return Err(TemplateError::NoContainers);
        }
        match pod.restart_policy.as_deref() {
            Some("Never" | "OnFailure") => {}
            other => return Err(TemplateError::RestartPolicy(other.unwrap_or("(unset: Always)").to_string())),
        }
        let annotations = job.metadata.annotations.clone().unwrap_or_default();

        let parameters = parse_parameters(annotations.get(keys::PARAMETERS))?;
        let declared: BTreeSet<&str> = parameters.iter().map(|p| p.name.as_str()).collect();
        let mut undeclared = None;
        for_each_string(&manifest, &mut |s| {
            for name in placeholders(s) {
                if undeclared.is_none() && !declared.contains(name) {
                    undeclared = Some(name.to_string());
                }
            }
        });
        if let Some(name) = undeclared {
            return Err(TemplateError::UndeclaredPlaceholder(name));
        }

        let container_names: Vec<&str> = pod.containers.iter().map(|c| c.name.as_str()).collect();
        let env_containers = match annotations.get(keys::ENV_CONTAINERS) {
            None => Vec::new(),
            Some(list) => {
                let names: Vec<String> =
                    list.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect();
                if let Some(missing) = names.iter().find(|n| !container_names.contains(&n.as_str())) {
                    return Err(TemplateError::Annotation {
                        annotation: keys::ENV_CONTAINERS,
                        problem: format!("no container named {missing:?} (containers: {})", container_names.join(", ")),
                    });
                }
                names
            }
        };
        let allowed_env = annotations
            .get(keys::ALLOWED_ENV)
            .map(|p| anchored(p))
            .transpose()
            .map_err(|e| TemplateError::Annotation { annotation: keys::ALLOWED_ENV, problem: e.to_string() })?;
        let max_active = annotations
            .get(keys::MAX_ACTIVE)
            .map(|v| match v.trim().parse::<u32>() {
                Ok(n) if n > 0 => Ok(n),
                _ => Err(TemplateError::Annotation {
                    annotation: keys::MAX_ACTIVE,
                    problem: format!("{v:?} is not a positive integer"),
                }),
            })
            .transpose()?;

        strip_launcher_fields(&mut manifest);
        let warnings = script_warnings(&manifest, &parameters);
        let mut template = Self {
            name: name.to_string(),
            source,
            manifest,
            parameters,
            env_containers,
            allowed_env,
            settable_env: BTreeSet::new(),
            max_active,
            warnings,
        };
        template.settable_env = template.declared_env_values();
        template.check_renders()?;
        Ok(template)
    }

    /// Renders with every parameter at a sample value and checks that the result is still a Job,
    /// so that a template which could only fail at launch time is refused when it is loaded.
    fn check_renders(&self) -> Result<(), TemplateError> {
        let params: BTreeMap<String, ParamValue> = self
            .parameters
            .iter()
            .map(|p| (p.name.clone(), ParamValue::String(p.default.clone().unwrap_or_else(|| "sample".into()))))
            .collect();
        let mut sample = self.manifest.clone();
        substitute(&mut sample, &params.iter().map(|(k, v)| (k.clone(), v.to_string())).collect());
        serde_json::from_value::<Job>(sample).map(drop).map_err(|e| TemplateError::NotAJob(e.to_string()))
    }

    /// The container names a request's env goes to.
    pub fn env_targets(&self) -> Vec<String> {
        if self.env_containers.is_empty() {
            self.manifest
                .pointer("/spec/template/spec/containers/0/name")
                .and_then(Value::as_str)
                .map(|n| vec![n.to_string()])
                .unwrap_or_default()
        } else {
            self.env_containers.clone()
        }
    }

    /// Variables the target containers declare with a literal `value`, less any that one of them
    /// sets with `valueFrom` (a secret must not be replaced by a caller's value).
    fn declared_env_values(&self) -> BTreeSet<String> {
        let targets = self.env_targets();
        let containers = self.manifest.pointer("/spec/template/spec/containers").and_then(Value::as_array);
        let vars = containers
            .into_iter()
            .flatten()
            .filter(|c| c.get("name").and_then(Value::as_str).is_some_and(|n| targets.iter().any(|t| t == n)))
            .filter_map(|c| c.get("env").and_then(Value::as_array))
            .flatten();
        let (mut literal, mut from) = (BTreeSet::new(), BTreeSet::new());
        for var in vars {
            let Some(name) = var.get("name").and_then(Value::as_str) else { continue };
            if var.get("valueFrom").is_some() {
                from.insert(name.to_string());
            } else {
                literal.insert(name.to_string());
            }
        }
        literal.difference(&from).cloned().collect()
    }

    /// The author's `allowed-env` pattern, without the anchoring wrapper around it.
    pub fn allowed_env_pattern(&self) -> Option<String> {
        let pattern = self.allowed_env.as_ref()?.as_str();
        Some(pattern.strip_prefix("^(?:").and_then(|p| p.strip_suffix(")$")).unwrap_or(pattern).to_string())
    }

    /// What a caller may put in `env`, in words, for errors.
    pub fn env_interface(&self) -> String {
        match self.allowed_env_pattern() {
            Some(pattern) => format!("names matching {pattern:?} (its {} annotation)", keys::ALLOWED_ENV),
            None if self.settable_env.is_empty() => format!(
                "none: its container declares no variable with a value, and it has no {} annotation",
                keys::ALLOWED_ENV
            ),
            None => format!(
                "only the variables its container declares with a value: {}",
                self.settable_env.iter().cloned().collect::<Vec<_>>().join(", ")
            ),
        }
    }

    /// The template's own `ttlSecondsAfterFinished`, if it sets one.
    pub fn ttl_seconds(&self) -> Option<i64> {
        self.manifest.pointer("/spec/ttlSecondsAfterFinished").and_then(Value::as_i64)
    }
}

/// A shell's "run this string" flag: `-c`, or a cluster of flags holding `c` (`-ec`, `-xc`).
fn is_script_flag(arg: &str) -> bool {
    arg.strip_prefix('-')
        .is_some_and(|f| !f.is_empty() && f.contains('c') && f.chars().all(|c| c.is_ascii_alphabetic()))
}

/// Warnings for parameters without a pattern used inside a shell script (`sh -c "... $(params.x)"`):
/// there a value is code, whatever escaping does.
fn script_warnings(manifest: &Value, parameters: &[Parameter]) -> Vec<String> {
    let mut warnings = Vec::new();
    for list in ["containers", "initContainers"] {
        let pointer = format!("/spec/template/spec/{list}");
        for container in manifest.pointer(&pointer).and_then(Value::as_array).into_iter().flatten() {
            let name = container.get("name").and_then(Value::as_str).unwrap_or_default();
            let words: Vec<&str> = ["command", "args"]
                .iter()
                .filter_map(|k| container.get(*k).and_then(Value::as_array))
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            let Some(flag) = words.iter().position(|w| is_script_flag(w)) else { continue };
            for word in &words[flag + 1..] {
                for used in placeholders(word) {
                    let unchecked = parameters.iter().any(|p| p.name == used && p.pattern.is_none());
                    let warning = format!(
                        "parameter {used} has no pattern and is used inside a shell script (container {name}): its value runs as code there; pass it through env and quote it (\"$NAME\"), or give it a pattern"
                    );
                    if unchecked && !warnings.contains(&warning) {
                        warnings.push(warning);
                    }
                }
            }
        }
    }
    warnings
}

fn check_kind(manifest: &Value) -> Result<(), TemplateError> {
    let field = |name: &str| manifest.get(name).and_then(Value::as_str);
    match (field("apiVersion"), field("kind")) {
        (Some("batch/v1"), Some("Job")) => Ok(()),
        (api_version, kind) => Err(TemplateError::NotAJob(format!(
            "apiVersion {:?} kind {:?}, want batch/v1 Job",
            api_version.unwrap_or(""),
            kind.unwrap_or("")
        ))),
    }
}

fn parse_parameters(annotation: Option<&String>) -> Result<Vec<Parameter>, TemplateError> {
    let Some(text) = annotation else { return Ok(Vec::new()) };
    let decls: Vec<ParameterDecl> = serde_saphyr::from_str(text).map_err(|e| TemplateError::Annotation {
        annotation: keys::PARAMETERS,
        problem: format!("want a YAML list of {{name, required, default, pattern, description}}: {e}"),
    })?;
    let mut seen = BTreeSet::new();
    decls
        .into_iter()
        .map(|d| {
            let problem = |problem: String| TemplateError::Parameter { name: d.name.clone(), problem };
            if !is_parameter_name(&d.name) {
                return Err(problem("a name is a letter or _, then letters, digits, _, - or ., at most 63".into()));
            }
            if !seen.insert(d.name.clone()) {
                return Err(problem("declared twice".into()));
            }
            let matcher =
                d.pattern.as_deref().map(anchored).transpose().map_err(|e| problem(format!("pattern: {e}")))?;
            let default = d.default.map(ScalarString::into_string);
            if let (Some(m), Some(v)) = (&matcher, &default)
                && !m.is_match(v)
            {
                return Err(problem(format!("default {v:?} does not match its pattern")));
            }
            Ok(Parameter {
                name: d.name.clone(),
                required: d.required,
                default,
                pattern: d.pattern,
                matcher,
                description: d.description,
            })
        })
        .collect()
}

/// Drops what the template may not decide: the Job's name and namespace (the launcher names Jobs
/// and creates them in its own namespace) and this project's configuration annotations.
fn strip_launcher_fields(manifest: &mut Value) {
    if let Some(meta) = manifest.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("name");
        meta.remove("generateName");
        meta.remove("namespace");
        meta.remove("resourceVersion");
        meta.remove("uid");
        meta.remove("creationTimestamp");
        if let Some(annotations) = meta.get_mut("annotations").and_then(Value::as_object_mut) {
            annotations.retain(|k, _| !k.starts_with(keys::PREFIX));
            if annotations.is_empty() {
                meta.remove("annotations");
            }
        }
    }
    if let Some(obj) = manifest.as_object_mut() {
        obj.remove("status");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) const SEED: &str = include_str!("../../deploy/helm/kube-job-launcher/files/job-template.yaml");

    fn source() -> TemplateSource {
        TemplateSource { config_map: "job-template-cm".into(), key: "job-template.yaml".into() }
    }

    fn parse(text: &str) -> Result<Template, TemplateError> {
        Template::parse("t", source(), text)
    }

    fn with_params(params: &str, args: &str) -> String {
        format!(
            r#"apiVersion: batch/v1
kind: Job
metadata:
  annotations:
    job-launcher.dev/parameters: |
{params}
spec:
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: main
        image: busybox
        args: {args}
"#
        )
    }

    #[test]
    fn the_original_launchers_template_is_valid() {
        let t = parse(SEED).expect("seed template");
        assert!(t.parameters.is_empty());
        assert_eq!(t.env_targets(), vec!["example".to_string()]);
        assert_eq!(t.ttl_seconds(), Some(10));
        assert_eq!(t.manifest.pointer("/metadata/labels/app"), Some(&Value::from("target-job")));
    }

    #[test]
    fn name_namespace_and_launcher_annotations_are_dropped() {
        let text = with_params("      - name: x", r#"["$(params.x)"]"#)
            .replace("metadata:\n", "metadata:\n  name: fixed\n  generateName: gen-\n  namespace: other\n");
        let t = parse(&text).expect("valid");
        let meta = t.manifest.get("metadata").expect("metadata");
        assert!(meta.get("name").is_none());
        assert!(meta.get("generateName").is_none());
        assert!(meta.get("namespace").is_none());
        assert!(
            meta.get("annotations").is_none(),
            "job-launcher.dev/ annotations are configuration, not copied to Jobs"
        );
    }

    #[test]
    fn parameters_are_read_with_defaults_and_patterns() {
        let text = with_params(
            "      - name: size\n        default: 3\n        pattern: '[0-9]+'\n      - name: who\n        required: true\n        description: the greeted",
            r#"["$(params.size)", "hello $(params.who)"]"#,
        );
        let t = parse(&text).expect("valid");
        assert_eq!(t.parameters.len(), 2);
        assert_eq!(t.parameters[0].default.as_deref(), Some("3"));
        assert!(t.parameters[0].matcher.as_ref().is_some_and(|m| m.is_match("42") && !m.is_match("4a2")));
        assert!(t.parameters[1].required);
        assert_eq!(t.parameters[1].description.as_deref(), Some("the greeted"));
    }

    #[test]
    fn an_undeclared_placeholder_makes_the_template_invalid() {
        let text = with_params("      - name: a", r#"["$(params.a)", "$(params.b)"]"#);
        assert_eq!(parse(&text).unwrap_err(), TemplateError::UndeclaredPlaceholder("b".into()));
    }

    #[test]
    fn a_pattern_that_does_not_compile_is_reported() {
        let text = with_params("      - name: a\n        pattern: '[unclosed'", "[]");
        assert!(
            matches!(parse(&text), Err(TemplateError::Parameter { name, problem }) if name == "a" && problem.starts_with("pattern"))
        );
    }

    #[test]
    fn a_parameter_s_fallback_value_must_match_its_pattern() {
        let text = with_params("      - name: a\n        default: abc\n        pattern: '[0-9]+'", "[]");
        assert!(matches!(parse(&text), Err(TemplateError::Parameter { .. })));
    }

    #[test]
    fn unknown_fields_in_a_parameter_declaration_are_refused() {
        let text = with_params("      - name: a\n        requird: true", "[]");
        assert!(matches!(parse(&text), Err(TemplateError::Annotation { annotation: keys::PARAMETERS, .. })));
    }

    #[test]
    fn a_parameter_declared_twice_is_refused() {
        let text = with_params("      - name: a\n      - name: a", "[]");
        assert!(matches!(parse(&text), Err(TemplateError::Parameter { problem, .. }) if problem == "declared twice"));
    }

    #[test]
    fn restart_policy_must_suit_a_job() {
        let text = SEED.replace("restartPolicy: Never", "restartPolicy: Always");
        assert_eq!(parse(&text).unwrap_err(), TemplateError::RestartPolicy("Always".into()));
        let text = SEED.replace("      restartPolicy: Never\n", "");
        assert!(matches!(parse(&text), Err(TemplateError::RestartPolicy(_))));
    }

    #[test]
    fn a_job_needs_containers() {
        let text = "apiVersion: batch/v1\nkind: Job\nspec:\n  template:\n    spec:\n      restartPolicy: Never\n      containers: []\n";
        assert_eq!(parse(text).unwrap_err(), TemplateError::NoContainers);
    }

    #[test]
    fn other_kinds_and_broken_syntax_are_refused() {
        assert!(matches!(parse("apiVersion: v1\nkind: Pod\n"), Err(TemplateError::NotAJob(_))));
        assert!(matches!(parse("kind: [unclosed"), Err(TemplateError::Syntax(_))));
        assert!(matches!(parse(&SEED.replace("parallelism: 1", "parallelism: many")), Err(TemplateError::NotAJob(_))));
    }

    #[test]
    fn json_templates_are_read_as_json() {
        let json = serde_json::to_string(&serde_saphyr::from_str::<Value>(SEED).expect("yaml")).expect("json");
        let t = Template::parse("t", TemplateSource { config_map: "cm".into(), key: "t.json".into() }, &json);
        assert!(t.is_ok());
    }

    #[test]
    fn env_containers_must_exist() {
        let text = SEED.replace(
            "  labels:\n",
            "  annotations:\n    job-launcher.dev/env-containers: example, sidecar\n  labels:\n",
        );
        assert!(matches!(parse(&text), Err(TemplateError::Annotation { annotation: keys::ENV_CONTAINERS, .. })));
        let text =
            SEED.replace("  labels:\n", "  annotations:\n    job-launcher.dev/env-containers: example\n  labels:\n");
        assert_eq!(parse(&text).expect("valid").env_targets(), vec!["example".to_string()]);
    }

    #[test]
    fn max_active_must_be_a_positive_integer() {
        let with = |v: &str| {
            SEED.replace(
                "  labels:\n",
                &format!("  annotations:\n    job-launcher.dev/max-active: \"{v}\"\n  labels:\n"),
            )
        };
        assert_eq!(parse(&with("3")).expect("valid").max_active, Some(3));
        assert!(parse(&with("0")).is_err());
        assert!(parse(&with("three")).is_err());
    }
}
