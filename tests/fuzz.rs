//! Hostile input, without a cluster: a deterministic fuzz run (fixed seed, fixed budget) over
//! template parsing and rendering, LaunchRequest decoding and SQS message decoding, and a
//! property test that no parameter value changes a rendered manifest's structure.
//!
//! `make test` runs a small budget; `make fuzz` a large one (FUZZ_ITERATIONS, FUZZ_SEED).

use std::{collections::BTreeMap, panic::AssertUnwindSafe, time::Instant};

use k8s_openapi::api::batch::v1::Job;
use kube_job_launcher::{
    api::{LaunchRequest, ParamValue, TemplateSource},
    sqs::message,
    template::{RenderInput, Template},
};
use serde_json::Value;

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
            template.render(RenderInput { params: &params, env: &env, labels: &labels })
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
                template.render(RenderInput { params: &r.params, env: &r.env, labels: &r.labels })
            });
        }
        let _ = no_panic("SQS message decoding", &text, || message::decode(&text));
    }
    eprintln!("requests: {iterations} inputs, {decoded} decoded");
}

#[test]
fn a_yaml_alias_bomb_is_refused_quickly() {
    let mut bomb = String::from("a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n");
    for (i, prev) in ('b'..='j').zip('a'..='i') {
        bomb.push_str(&format!(
            "{i}: &{i} [*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev}]\n"
        ));
    }
    bomb.push_str("apiVersion: batch/v1\nkind: Job\n");
    let started = Instant::now();
    let result = Template::parse("bomb", source(), &bomb);
    assert!(result.is_err(), "a billion laughs is not a template");
    assert!(started.elapsed().as_secs() < 2, "refused in {:?}", started.elapsed());
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

#[test]
fn no_parameter_value_changes_the_rendered_manifests_structure() {
    let (seed, iterations) = budget();
    let mut rng = Rng(seed ^ 0x0123_4567);
    let text = r#"apiVersion: batch/v1
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
      containers:
      - name: main
        image: "busybox:$(params.v)"
        args: ["$(params.v)", "prefix $(params.v) suffix"]
        env:
        - name: V
          value: "$(params.v)"
"#;
    let template = Template::parse("t", source(), text).expect("valid");
    let render = |v: &str| {
        let params = BTreeMap::from([("v".to_string(), ParamValue::String(v.to_string()))]);
        template
            .render(RenderInput { params: &params, env: &BTreeMap::new(), labels: &BTreeMap::new() })
            .expect("renders")
    };
    let reference = shape(&render("x"));
    for _ in 0..iterations {
        let value = random_value(&mut rng);
        let out = render(&value);
        assert_eq!(shape(&out), reference, "the value {value:?} changed the manifest's structure");
        assert_eq!(out.pointer("/spec/template/spec/containers/0/args/0"), Some(&Value::from(value.clone())));
        assert_eq!(
            out.pointer("/spec/template/spec/containers/0/args/1"),
            Some(&Value::from(format!("prefix {value} suffix")))
        );
        assert_eq!(out.pointer("/spec/template/spec/containers/0/env/0/value"), Some(&Value::from(value.clone())));
    }
}
