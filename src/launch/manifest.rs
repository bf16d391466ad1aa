//! The launcher's marks on a rendered Job: its name, labels and annotations, TTL and suspension,
//! and the fingerprint of the request that made it. Pure.

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::{notice_policy::NoticeTargets, origin::Origin};
use crate::{api::LaunchRequest, keys, template::render::ensure_object};

/// What identifies a Job as the launcher's, and the request behind it.
#[derive(Debug, Clone)]
pub struct JobIdentity<'a> {
    pub name: &'a str,
    pub instance: &'a str,
    pub template: &'a str,
    pub origin: &'a Origin,
    pub priority: i32,
    pub idempotency_key: Option<&'a str>,
    pub request_hash: &'a str,
    pub ttl_seconds: i64,
    /// Set when the Job must wait for admission: it is created suspended and labelled queued.
    pub queued_at: Option<Timestamp>,
    /// The template's own cap, recorded so that it holds while the template is not loaded.
    pub template_cap: Option<u32>,
    /// Where the Job's completion notice goes; with any, the Job carries the notice finalizer.
    pub notices: &'a NoticeTargets,
}

/// A fingerprint of what a request asks for (not of who asked or how): the same request, sent
/// again under the same idempotency key, has the same fingerprint. The launcher's own variables
/// count with the caller's, as one set: so a raw SQS message's fingerprint is the one earlier
/// releases computed, when `MESSAGE_BODY` travelled in the request's env.
pub fn request_hash(template: &str, request: &LaunchRequest, launcher_env: &BTreeMap<String, String>) -> String {
    let mut env = launcher_env.clone();
    env.extend(request.env.iter().map(|(k, v)| (k.clone(), v.clone())));
    let mut canonical = json!({
        "template": template,
        "params": request.params,
        "env": env,
        "labels": request.labels,
        "priority": request.priority,
    });
    // Only when asked for: requests without notices keep the fingerprint they always had.
    if let Some(notify) = &request.notify {
        canonical["notify"] = json!(notify);
    }
    // BTreeMaps serialize in key order, so the encoding is canonical.
    let digest = Sha256::digest(canonical.to_string().as_bytes());
    digest.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

/// Names, labels and annotates the manifest; sets its TTL; suspends it when it must queue.
pub fn apply_identity(manifest: &mut Value, identity: &JobIdentity<'_>) {
    let origin = identity.origin;
    let mut labels = vec![
        (keys::MANAGED_BY, keys::MANAGED_BY_VALUE.to_string()),
        (keys::INSTANCE, identity.instance.to_string()),
        (keys::TEMPLATE, identity.template.to_string()),
        (keys::SOURCE, origin.source.as_str().to_string()),
    ];
    let pod_labels = labels.clone();
    if identity.queued_at.is_some() {
        labels.push((keys::QUEUED, "true".into()));
    }
    let mut annotations = vec![
        (keys::REQUEST_HASH, Some(identity.request_hash.to_string())),
        (keys::PRIORITY, Some(identity.priority.to_string())),
        (keys::IDEMPOTENCY_KEY, identity.idempotency_key.map(String::from)),
        (keys::REQUEST_ID, origin.request_id.clone()),
        (keys::SQS_MESSAGE_ID, origin.sqs_message_id.clone()),
        (keys::SQS_QUEUE, origin.sqs_queue.clone()),
        (keys::REQUESTED_BY, Some(origin.caller.clone())),
    ];
    if let Some(at) = identity.queued_at {
        annotations.push((keys::QUEUED_AT, Some(at.to_string())));
    }
    annotations.push((keys::MAX_ACTIVE, identity.template_cap.map(|c| c.to_string())));
    annotations.push((keys::NOTIFY_URL, identity.notices.url.clone()));
    annotations.push((keys::NOTIFY_SQS, (!identity.notices.sqs.is_empty()).then(|| identity.notices.sqs.join(" "))));

    if let Some(meta) = ensure_object(manifest, "/metadata") {
        meta.insert("name".into(), Value::String(identity.name.to_string()));
        if !identity.notices.is_empty() {
            meta.insert("finalizers".into(), json!([keys::NOTIFY_FINALIZER]));
        }
        insert_all(meta, "labels", labels.into_iter().map(|(k, v)| (k, Some(v))));
        insert_all(meta, "annotations", annotations.into_iter());
    }
    if let Some(meta) = ensure_object(manifest, "/spec/template/metadata") {
        insert_all(meta, "labels", pod_labels.into_iter().map(|(k, v)| (k, Some(v))));
    }
    if let Some(spec) = ensure_object(manifest, "/spec") {
        spec.entry("ttlSecondsAfterFinished").or_insert_with(|| Value::from(identity.ttl_seconds));
        if identity.queued_at.is_some() {
            spec.insert("suspend".into(), Value::Bool(true));
        }
    }
}

fn insert_all<'a>(
    meta: &mut serde_json::Map<String, Value>,
    field: &str,
    entries: impl Iterator<Item = (&'a str, Option<String>)>,
) {
    let target = meta.entry(field).or_insert_with(|| Value::Object(Default::default()));
    if !target.is_object() {
        *target = Value::Object(Default::default());
    }
    if let Some(target) = target.as_object_mut() {
        for (k, v) in entries {
            if let Some(v) = v {
                target.insert(k.to_string(), Value::String(v));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::{api::ParamValue, launch::Source};

    fn request() -> LaunchRequest {
        LaunchRequest {
            params: BTreeMap::from([("a".into(), ParamValue::String("1".into()))]),
            env: BTreeMap::from([("X".into(), "y".into())]),
            ..Default::default()
        }
    }

    #[test]
    fn the_fingerprint_covers_what_is_asked_not_who_asks() {
        let none = BTreeMap::new();
        let base = request_hash("t", &request(), &none);
        assert_eq!(base.len(), 32);
        let mut keyed = request();
        keyed.idempotency_key = Some("k".into());
        assert_eq!(request_hash("t", &keyed, &none), base, "the key is not part of the request");
        assert_ne!(request_hash("t2", &request(), &none), base);
        let mut other = request();
        other.env.insert("X".into(), "z".into());
        assert_ne!(request_hash("t", &other, &none), base);
        let mut prioritized = request();
        prioritized.priority = 1;
        assert_ne!(request_hash("t", &prioritized, &none), base);
    }

    #[test]
    fn the_launchers_own_variables_count_as_the_requests_env_did() {
        // Earlier releases sent a raw SQS body's variables in the request's env; the same message
        // must keep its fingerprint now that the launcher adds them itself.
        let mut before = request();
        before.env.insert("MESSAGE_BODY".into(), "{}".into());
        let launcher_env = BTreeMap::from([("MESSAGE_BODY".to_string(), "{}".to_string())]);
        assert_eq!(request_hash("t", &request(), &launcher_env), request_hash("t", &before, &BTreeMap::new()));
    }

    #[test]
    fn the_job_carries_the_launchers_labels_annotations_and_ttl() {
        let mut manifest = json!({"metadata": {"labels": {"app": "x"}}, "spec": {"template": {"spec": {}}}});
        let origin = Origin { request_id: Some("req-1".into()), ..Origin::new(Source::Sqs, "sqs:q") };
        let identity = JobIdentity {
            name: "t-abc",
            instance: "team-a",
            template: "t",
            origin: &origin,
            priority: 3,
            idempotency_key: Some("k"),
            request_hash: "h",
            ttl_seconds: 600,
            queued_at: None,
            template_cap: Some(2),
            notices: &NoticeTargets { url: Some("https://h/x".into()), sqs: vec!["q1".into(), "q2".into()] },
        };
        apply_identity(&mut manifest, &identity);
        assert_eq!(manifest.pointer("/metadata/name"), Some(&json!("t-abc")));
        let labels = &manifest["metadata"]["labels"];
        assert_eq!(labels["app"], "x");
        assert_eq!(labels[keys::MANAGED_BY], keys::MANAGED_BY_VALUE);
        assert_eq!(labels[keys::SOURCE], "sqs");
        assert_eq!(labels[keys::INSTANCE], "team-a");
        assert!(labels.get(keys::QUEUED).is_none());
        let annotations = &manifest["metadata"]["annotations"];
        assert_eq!(annotations[keys::PRIORITY], "3");
        assert_eq!(annotations[keys::IDEMPOTENCY_KEY], "k");
        assert_eq!(annotations[keys::REQUEST_ID], "req-1");
        assert_eq!(annotations[keys::REQUESTED_BY], "sqs:q", "the caller is always recorded");
        assert_eq!(annotations[keys::MAX_ACTIVE], "2", "the template's cap is recorded");
        assert_eq!(
            (annotations[keys::NOTIFY_URL].as_str(), annotations[keys::NOTIFY_SQS].as_str()),
            (Some("https://h/x"), Some("q1 q2"))
        );
        assert_eq!(manifest["metadata"]["finalizers"], json!([keys::NOTIFY_FINALIZER]), "held until its notice is out");
        assert!(annotations.get(keys::SQS_MESSAGE_ID).is_none(), "absent facts leave no empty annotation");
        assert_eq!(
            manifest.pointer("/spec/template/metadata/labels/app.kubernetes.io~1managed-by"),
            Some(&json!(keys::MANAGED_BY_VALUE))
        );
        assert_eq!(manifest.pointer("/spec/ttlSecondsAfterFinished"), Some(&json!(600)));
        assert!(manifest.pointer("/spec/suspend").is_none());
    }

    #[test]
    fn the_templates_own_ttl_wins_and_a_queued_job_is_suspended() {
        let mut manifest = json!({"spec": {"ttlSecondsAfterFinished": 10}});
        let origin = Origin::new(Source::Http, "anonymous");
        let at = Timestamp::from_second(1).ok();
        let identity = JobIdentity {
            name: "n",
            instance: "default",
            template: "t",
            origin: &origin,
            priority: 0,
            idempotency_key: None,
            request_hash: "h",
            ttl_seconds: 600,
            queued_at: at,
            template_cap: None,
            notices: &NoticeTargets::default(),
        };
        apply_identity(&mut manifest, &identity);
        assert_eq!(manifest.pointer("/spec/ttlSecondsAfterFinished"), Some(&json!(10)));
        assert_eq!(manifest.pointer("/spec/suspend"), Some(&json!(true)));
        assert!(manifest.pointer("/metadata/finalizers").is_none(), "no notice, no finalizer");
        assert_eq!(manifest["metadata"]["labels"][keys::QUEUED], "true");
        assert_eq!(manifest["metadata"]["annotations"][keys::QUEUED_AT], "1970-01-01T00:00:01Z");
        assert!(
            manifest.pointer("/spec/template/metadata/labels/job-launcher.dev~1queued").is_none(),
            "pods are not labelled queued"
        );
    }
}
