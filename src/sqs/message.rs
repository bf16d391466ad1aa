//! How an SQS message becomes a LaunchRequest. Pure.
//!
//! A body that is a LaunchRequest is used as one. Any other body launches the queue's template
//! with the body in `MESSAGE_BODY`, the id in `MESSAGE_ID`, and the body's top-level JSON fields
//! bound to the template's declared parameters of the same name.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::api::{LaunchRequest, ParamValue};

pub const MESSAGE_BODY_ENV: &str = "MESSAGE_BODY";
pub const MESSAGE_ID_ENV: &str = "MESSAGE_ID";

/// What a message body is.
#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    /// A LaunchRequest: used as it is (its own idempotency key, else the message id).
    Request(LaunchRequest),
    /// Anything else: the raw text, and its top-level fields when it is a JSON object.
    Raw { text: String, fields: serde_json::Map<String, Value> },
}

pub fn decode(text: &str) -> Body {
    if let Ok(request) = serde_json::from_str::<LaunchRequest>(text) {
        return Body::Request(request);
    }
    let fields = match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => map,
        _ => serde_json::Map::new(),
    };
    Body::Raw { text: text.to_string(), fields }
}

/// The LaunchRequest for a raw body: `template` with fields bound to the parameters `declared` (a
/// scalar as itself, anything else as its JSON text), and the variables the launcher sets for it
/// (the body in `MESSAGE_BODY`, the id in `MESSAGE_ID`).
pub fn raw_request(
    template: &str,
    message_id: &str,
    text: &str,
    fields: &serde_json::Map<String, Value>,
    declared: &[String],
) -> (LaunchRequest, BTreeMap<String, String>) {
    let params = fields
        .iter()
        .filter(|(k, _)| declared.contains(k))
        .map(|(k, v)| {
            let value = match v {
                Value::String(s) => ParamValue::String(s.clone()),
                Value::Number(n) => ParamValue::Number(n.clone()),
                Value::Bool(b) => ParamValue::Bool(*b),
                other => ParamValue::String(other.to_string()),
            };
            (k.clone(), value)
        })
        .collect();
    let request = LaunchRequest {
        template: Some(template.to_string()),
        params,
        idempotency_key: Some(message_id.to_string()),
        ..LaunchRequest::default()
    };
    let env = BTreeMap::from([
        (MESSAGE_BODY_ENV.to_string(), text.to_string()),
        (MESSAGE_ID_ENV.to_string(), message_id.to_string()),
    ]);
    (request, env)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_launch_request_body_is_used_as_one() {
        let Body::Request(r) = decode(r#"{"template": "t", "params": {"n": 1}, "priority": 2}"#) else {
            panic!("request")
        };
        assert_eq!(r.template.as_deref(), Some("t"));
        assert_eq!(r.priority, 2);
        assert!(matches!(decode("{}"), Body::Request(_)), "an empty object is an empty request");
    }

    #[test]
    fn the_original_launchers_message_is_raw_and_binds_declared_fields() {
        let text = r#"{"jobId":"jobid-123","title":"jobtitle","size":3,"tags":["a"]}"#;
        let Body::Raw { text: raw, fields } = decode(text) else { panic!("raw") };
        assert_eq!(raw, text);
        let declared = vec!["jobId".to_string(), "size".to_string(), "tags".to_string(), "absent".to_string()];
        let (r, env) = raw_request("job-template", "m-1", &raw, &fields, &declared);
        assert_eq!(r.template.as_deref(), Some("job-template"));
        assert_eq!(r.idempotency_key.as_deref(), Some("m-1"));
        assert!(r.env.is_empty(), "the caller's env stays empty: the launcher sets the message's variables");
        assert_eq!(env.get(MESSAGE_BODY_ENV).map(String::as_str), Some(text));
        assert_eq!(env.get(MESSAGE_ID_ENV).map(String::as_str), Some("m-1"));
        assert_eq!(r.params.get("jobId"), Some(&ParamValue::String("jobid-123".into())));
        assert_eq!(r.params.get("size"), Some(&ParamValue::Number(3.into())));
        assert_eq!(r.params.get("tags"), Some(&ParamValue::String("[\"a\"]".into())));
        assert!(!r.params.contains_key("title"), "undeclared fields stay in MESSAGE_BODY only");
        assert!(!r.params.contains_key("absent"));
    }

    #[test]
    fn non_json_and_non_object_bodies_are_raw_without_fields() {
        for text in ["hello", "[1,2]", "42", ""] {
            let Body::Raw { fields, .. } = decode(text) else { panic!("raw: {text}") };
            assert!(fields.is_empty());
        }
    }
}
