//! Hostile input, without a cluster: a deterministic fuzz run (fixed seed, fixed budget) over
//! template parsing and rendering, LaunchRequest decoding and SQS message decoding, and property
//! tests (proptest, which shrinks a failing value to a small one and keeps it in
//! tests/proptest-regressions.txt) that no value changes a rendered manifest's structure and that
//! every value reaches the container verbatim, through Kubernetes' own `$(VAR)` expansion.
//!
//! `make test` runs a small budget; `make fuzz` a large one (FUZZ_ITERATIONS, FUZZ_SEED;
//! PROPTEST_CASES for the property tests).

mod support;

use std::{collections::BTreeMap, panic::AssertUnwindSafe};

use k8s_openapi::api::batch::v1::Job;
use kube_job_launcher::{
    api::{LaunchRequest, ParamValue, TemplateSource},
    sqs::message,
    template::{RenderInput, Template},
};
use proptest::{prelude::*, test_runner::FileFailurePersistence};
use serde_json::Value;
use support::expansion::{expand, expand_with};

const SEED_TEMPLATE: &str = include_str!("../deploy/helm/kube-job-launcher/files/job-template.yaml");
const GREETING: &str = include_str!("../examples/greeting.yaml");

/// xorshift64*: small, fast, and the same sequence for the same seed everywhere.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

fn budget() -> (u64, usize) {
    let seed = std::env::var("FUZZ_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x5eed_cafe);
    let iterations = std::env::var("FUZZ_ITERATIONS").ok().and_then(|s| s.parse().ok()).unwrap_or(3000);
    (seed, iterations)
}

/// Pieces of syntax that make parsers work: YAML and JSON structure, anchors and tags,
/// placeholders, control and multi-byte characters.
const FRAGMENTS: &[&str] = &[
    ":",
    "- ",
    "{",
    "}",
    "[",
    "]",
    ",",
    "\"",
    "'",
    "\n",
    "\n  ",
    "\t",
    "#",
    "&a ",
    "*a",
    "!!binary ",
    "!!str ",
    "---\n",
    "...\n",
    "$(params.",
    "$(params.name)",
    ")",
    "|\n",
    ">-\n",
    "? ",
    "\\",
    "\u{0}",
    "\u{feff}",
    "é",
    "🦀",
    "null",
    "~",
    "1e999",
    "-0",
    "0x1F",
    "true",
    "<<: *a\n",
    "%YAML 1.2\n",
    "kind: Pod\n",
    "apiVersion: v1\n",
];

fn mutate(rng: &mut Rng, input: &str, other: &str) -> String {
    let mut bytes = input.as_bytes().to_vec();
    for _ in 0..=rng.below(4) {
        let at = rng.below(bytes.len() + 1);
        match rng.below(6) {
            0 => bytes.splice(at..at, rng.pick(FRAGMENTS).bytes()).for_each(drop),
            1 if !bytes.is_empty() => {
                let end = (at + rng.below(16)).min(bytes.len());
                bytes.drain(at.min(end)..end);
            }
            2 if at < bytes.len() => bytes[at] ^= 1 << rng.below(8),
            3 => {
                let from = rng.below(other.len() + 1);
                let to = (from + rng.below(64)).min(other.len());
                bytes.splice(at..at, other.as_bytes()[from..to].iter().copied()).for_each(drop);
            }
            4 if !bytes.is_empty() => {
                let end = (at + rng.below(32)).min(bytes.len());
                let copy = bytes[at.min(end)..end].to_vec();
                bytes.splice(at..at, copy).for_each(drop);
            }
            _ => bytes.splice(at..at, std::iter::repeat_n(b' ', rng.below(4))).for_each(drop),
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

fn random_value(rng: &mut Rng) -> String {
    (0..rng.below(12)).map(|_| *rng.pick(FRAGMENTS)).collect::<Vec<_>>().concat()
}

fn source() -> TemplateSource {
    TemplateSource { config_map: "cm".into(), key: "t.yaml".into() }
}

fn no_panic<T>(what: &str, input: &str, f: impl FnOnce() -> T) -> T {
    std::panic::catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|_| panic!("{what} panicked on input:\n{input:?}"))
}

#[test]
fn fuzz_template_parsing_and_rendering() {
    let (seed, iterations) = budget();
    let mut rng = Rng(seed);
    let corpus = [SEED_TEMPLATE, GREETING];
    let (mut parsed, mut rendered) = (0, 0);
    for _ in 0..iterations {
        let base = *rng.pick(&corpus);
        let other = *rng.pick(&corpus);
        let text = mutate(&mut rng, base, other);
        let Ok(template) = no_panic("Template::parse", &text, || Template::parse("t", source(), &text)) else {
            continue;
        };
        parsed += 1;
        // A template that parses must render to a Job for any values its parameters accept.
        let params: BTreeMap<String, ParamValue> =
            template.parameters.iter().map(|p| (p.name.clone(), ParamValue::String(random_value(&mut rng)))).collect();
        let env = BTreeMap::from([("GREETING_X".to_string(), random_value(&mut rng))]);
        let labels = BTreeMap::new();
        let out = no_panic("Template::render", &text, || {
            template.render(RenderInput { params: &params, env: &env, launcher_env: &labels, labels: &labels })
        });
        if let Ok(manifest) = out {
            rendered += 1;
            assert!(
                serde_json::from_value::<Job>(manifest).is_ok(),
                "a valid template rendered a non-Job from:\n{text:?}"
            );
        }
    }
    eprintln!("templates: {iterations} inputs, {parsed} parsed, {rendered} rendered");
    assert!(parsed > 0, "the mutations should leave some templates valid");
}

#[test]
fn fuzz_launch_request_and_sqs_message_decoding() {
    let (seed, iterations) = budget();
    let mut rng = Rng(seed ^ 0xdead_beef);
    let corpus = [
        r#"{"template":"greeting","params":{"name":"Ada","times":2},"env":{"GREETING_STYLE":"x"},"labels":{"team":"a"},"priority":3,"idempotencyKey":"k"}"#,
        r#"{"jobId":"jobid-123","title":"jobtitle"}"#,
        "{}",
    ];
    let template = Template::parse("greeting", source(), GREETING).expect("the example template is valid");
    let mut decoded = 0;
    for _ in 0..iterations {
        let (base, other) = (*rng.pick(&corpus), *rng.pick(&corpus));
        let text = mutate(&mut rng, base, other);
        let request = no_panic("LaunchRequest decoding", &text, || serde_json::from_str::<LaunchRequest>(&text));
        if let Ok(r) = request {
            decoded += 1;
            let _ = no_panic("render", &text, || {
                template.render(RenderInput {
                    params: &r.params,
                    env: &r.env,
                    launcher_env: &BTreeMap::new(),
                    labels: &r.labels,
                })
            });
        }
        let _ = no_panic("SQS message decoding", &text, || message::decode(&text));
    }
    eprintln!("requests: {iterations} inputs, {decoded} decoded");
}

/// Refused by the parser's node budget (a bounded amount of work), not by running out of time:
/// the assertion is on why, so the test does not depend on the machine's speed.
#[test]
fn a_yaml_alias_bomb_is_refused_by_the_parsers_budget() {
    let mut bomb = String::from("a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n");
    for (i, prev) in ('b'..='j').zip('a'..='i') {
        bomb.push_str(&format!(
            "{i}: &{i} [*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev}]\n"
        ));
    }
    bomb.push_str("apiVersion: batch/v1\nkind: Job\n");
    let error = Template::parse("bomb", source(), &bomb).expect_err("a billion laughs is not a template");
    assert!(error.to_string().contains("budget breached"), "{error}");
}

/// The structure of a JSON value: object keys, array lengths and value kinds, not the text of
/// strings.
fn shape(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(map.iter().map(|(k, v)| (k.clone(), shape(v))).collect()),
        Value::Array(items) => Value::Array(items.iter().map(shape).collect()),
        Value::String(_) => Value::from("string"),
        Value::Number(_) => Value::from("number"),
        Value::Bool(_) => Value::from("bool"),
        Value::Null => Value::Null,
    }
}

const PROPERTY_TEMPLATE: &str = r#"apiVersion: batch/v1
kind: Job
metadata:
  annotations:
    job-launcher.dev/parameters: |
      - name: v
spec:
  template:
    metadata:
      labels:
        fixed: label
      annotations:
        note: "$(params.v)"
    spec:
      restartPolicy: Never
      initContainers:
      - name: init
        image: busybox
        command: ["$(params.v)"]
        volumeMounts:
        - name: data
          mountPath: /data
          subPathExpr: "$(params.v)"
      containers:
      - name: main
        image: "busybox:$(params.v)"
        args: ["$(params.v)", "prefix $(params.v) suffix", "$(params.v)$(SECRET)"]
        env:
        - name: SECRET
          value: the-secret
        - name: V
          value: "$(params.v)"
      volumes:
      - name: data
        emptyDir: {}
"#;

/// Values that make expansion and YAML work: `$`, parentheses, quotes, newlines, multi-byte
/// characters, and anything at all.
fn hostile_value() -> impl Strategy<Value = String> {
    prop_oneof![
        "[$()a-zA-Z_{}\"':#\\\n é🦀]{0,40}",
        "(\\$\\(|\\$\\$|\\$|\\)|SECRET|params\\.v|[a-z ]){0,12}",
        any::<String>(),
    ]
}

fn property_config() -> ProptestConfig {
    ProptestConfig {
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct("tests/proptest-regressions.txt"))),
        ..ProptestConfig::default()
    }
}

fn render_property_template(value: &str) -> Value {
    let template = Template::parse("t", source(), PROPERTY_TEMPLATE).expect("valid");
    let params = BTreeMap::from([("v".to_string(), ParamValue::String(value.to_string()))]);
    let none = BTreeMap::new();
    template.render(RenderInput { params: &params, env: &none, launcher_env: &none, labels: &none }).expect("renders")
}

fn text_at<'a>(manifest: &'a Value, pointer: &str) -> &'a str {
    manifest.pointer(pointer).and_then(Value::as_str).unwrap_or_else(|| panic!("no string at {pointer}"))
}

proptest! {
    #![proptest_config(property_config())]

    /// No value, whatever YAML or JSON it holds, changes the manifest's structure.
    #[test]
    fn no_value_changes_the_rendered_manifests_structure(value in hostile_value()) {
        let reference = shape(&render_property_template("x"));
        prop_assert_eq!(shape(&render_property_template(&value)), reference);
    }

    /// What the process sees, after Kubernetes expands `$(VAR)` with the container's variables,
    /// is exactly the value sent: a value holding `$(SECRET)` or `$$` is not expanded.
    #[test]
    fn every_value_reaches_the_container_verbatim(value in hostile_value()) {
        let out = render_property_template(&value);
        let seen = |pointer: &str| expand_with(text_at(&out, pointer), &[("SECRET", "the-secret"), ("V", "v")]);
        let main = "/spec/template/spec/containers/0";
        prop_assert_eq!(seen(&format!("{main}/args/0")), value.clone());
        prop_assert_eq!(seen(&format!("{main}/args/1")), format!("prefix {value} suffix"));
        // The template's own `$(SECRET)` after the value is still the author's, and expands.
        prop_assert_eq!(seen(&format!("{main}/args/2")), format!("{value}the-secret"));
        prop_assert_eq!(seen(&format!("{main}/env/1/value")), value.clone());
        let init = "/spec/template/spec/initContainers/0";
        prop_assert_eq!(seen(&format!("{init}/command/0")), value.clone());
        prop_assert_eq!(seen(&format!("{init}/volumeMounts/0/subPathExpr")), value.clone());
        // Fields Kubernetes does not expand get the value as it is.
        prop_assert_eq!(text_at(&out, "/spec/template/metadata/annotations/note"), value.as_str());
    }

    /// A request's env values are escaped the same way.
    #[test]
    fn env_values_reach_the_container_verbatim(value in hostile_value()) {
        let template = Template::parse("g", source(), GREETING).expect("valid");
        let params = BTreeMap::from([("name".to_string(), ParamValue::String("Ada".into()))]);
        let env = BTreeMap::from([("GREETING_STYLE".to_string(), value.clone())]);
        let none = BTreeMap::new();
        let out = template
            .render(RenderInput { params: &params, env: &env, launcher_env: &none, labels: &none })
            .expect("renders");
        let vars = out.pointer("/spec/template/spec/containers/0/env").and_then(Value::as_array).expect("env");
        let style = vars.iter().find(|v| v["name"] == "GREETING_STYLE").expect("GREETING_STYLE");
        prop_assert_eq!(expand(style["value"].as_str().unwrap_or_default(), |_| Some("EXPANDED".into())), value);
    }
}

#[test]
fn the_expansion_helper_follows_kubernetes_rules() {
    let env = [("A", "x")];
    assert_eq!(expand_with("$(A)", &env), "x");
    assert_eq!(expand_with("$(B)", &env), "$(B)", "undefined stays");
    assert_eq!(expand_with("$$(A)", &env), "$(A)", "escaped");
    assert_eq!(expand_with("$$$(A)", &env), "$x");
    assert_eq!(expand_with("a$", &env), "a$", "a trailing $ stays");
    assert_eq!(expand_with("$(A", &env), "$(A", "unclosed stays");
    assert_eq!(expand_with("$b", &env), "$b");
    assert_eq!(expand_with("$(A)$(A)", &env), "xx");
}
