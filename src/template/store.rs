//! TemplateStore: the templates of the ConfigMaps named by `--template-configmap`, kept current by
//! a watch per ConfigMap. Launches read them from memory; an invalid update keeps the last valid
//! version serving and is reported (status, metric, log line, Event on the ConfigMap).

use std::{
    collections::{BTreeMap, HashMap},
    hash::{Hash, Hasher},
    sync::{Arc, RwLock},
};

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::{
    Api, Client, Resource, ResourceExt,
    runtime::{
        WatchStreamExt,
        events::{Event, EventType, Recorder, Reporter},
        watcher,
    },
};
use tokio::sync::watch;

use super::Template;
use crate::{
    api::{ParameterView, TemplateSource, TemplateView, Validity},
    health::Health,
    telemetry::{Metrics, OutcomeLabels, TemplateLabels},
};

/// One template key of one ConfigMap.
#[derive(Debug, Clone)]
struct Entry {
    source: TemplateSource,
    /// The version launches use: the latest valid one.
    serving: Option<Arc<Template>>,
    /// Why the latest version is invalid, if it is.
    error: Option<String>,
    /// Hash of the latest text, to tell a change from a relist.
    text_hash: u64,
}

/// The result of looking a template up.
#[derive(Debug, Clone)]
pub enum TemplateLookup {
    Found(Arc<Template>),
    /// Known, but it never had a valid version.
    Invalid(String),
    /// No such template; the names that do exist.
    Missing(Vec<String>),
}

#[derive(Default)]
struct StoreState {
    /// Per ConfigMap, its templates by name.
    by_config_map: HashMap<String, BTreeMap<String, Entry>>,
    synced: Vec<String>,
}

struct Inner {
    namespace: String,
    /// In flag order: an earlier ConfigMap's template shadows a later one's of the same name.
    config_maps: Vec<String>,
    state: RwLock<StoreState>,
    synced: watch::Sender<bool>,
    changes: watch::Sender<u64>,
    metrics: Metrics,
}

#[derive(Clone)]
pub struct TemplateStore {
    inner: Arc<Inner>,
}

/// The template name for a ConfigMap key, if the key holds one.
pub fn template_name(key: &str) -> Option<&str> {
    [".yaml", ".yml", ".json"].iter().find_map(|ext| key.strip_suffix(ext)).filter(|n| !n.is_empty())
}

fn text_hash(text: &str) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    text.hash(&mut h);
    h.finish()
}

impl TemplateStore {
    pub fn new(namespace: &str, config_maps: Vec<String>, metrics: Metrics) -> Self {
        Self {
            inner: Arc::new(Inner {
                namespace: namespace.to_string(),
                config_maps,
                state: RwLock::default(),
                synced: watch::Sender::new(false),
                changes: watch::Sender::new(0),
                metrics,
            }),
        }
    }

    /// True once every ConfigMap's watch has listed it (or found it absent).
    pub fn is_synced(&self) -> bool {
        *self.inner.synced.borrow()
    }

    /// Resolves once every ConfigMap has been listed.
    pub async fn synced(&self) {
        let _ = self.inner.synced.subscribe().wait_for(|synced| *synced).await;
    }

    /// A receiver that sees a new value after every change of any template.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.inner.changes.subscribe()
    }

    fn read<R>(&self, f: impl FnOnce(&StoreState) -> R) -> R {
        f(&self.inner.state.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// Entries by template name, each from the first ConfigMap (in flag order) that has it.
    fn visible(&self, state: &StoreState) -> BTreeMap<String, Entry> {
        let mut out = BTreeMap::new();
        for cm in &self.inner.config_maps {
            for (name, entry) in state.by_config_map.get(cm).into_iter().flatten() {
                out.entry(name.clone()).or_insert_with(|| entry.clone());
            }
        }
        out
    }

    pub fn lookup(&self, name: &str) -> TemplateLookup {
        self.read(|state| {
            for cm in &self.inner.config_maps {
                if let Some(entry) = state.by_config_map.get(cm).and_then(|t| t.get(name)) {
                    return match (&entry.serving, &entry.error) {
                        (Some(t), _) => TemplateLookup::Found(t.clone()),
                        (None, error) => TemplateLookup::Invalid(error.clone().unwrap_or_default()),
                    };
                }
            }
            TemplateLookup::Missing(self.visible(state).into_keys().collect())
        })
    }

    pub fn statuses(&self) -> Vec<TemplateView> {
        self.read(|state| self.visible(state).into_iter().map(|(name, e)| status_of(name, &e)).collect())
    }

    pub fn status(&self, name: &str) -> Option<TemplateView> {
        self.read(|state| self.visible(state).remove(name).map(|e| status_of(name.to_string(), &e)))
    }

    /// Applies a ConfigMap's current content: parses every template key, keeps the last valid
    /// version of those that broke, forgets keys that went. Returns the reports of what changed,
    /// for logging and Events.
    pub fn apply_config_map(&self, name: &str, data: &BTreeMap<String, String>) -> Vec<Change> {
        let mut changes = Vec::new();
        {
            let mut state = self.inner.state.write().unwrap_or_else(|p| p.into_inner());
            let previous = state.by_config_map.remove(name).unwrap_or_default();
            let mut next = BTreeMap::new();
            for (key, text) in data {
                let Some(template_name) = template_name(key) else { continue };
                let hash = text_hash(text);
                let old = previous.get(template_name);
                if let Some(old) = old.filter(|o| o.text_hash == hash && o.source.key == *key) {
                    next.insert(template_name.to_string(), old.clone());
                    continue;
                }
                let source = TemplateSource { config_map: name.to_string(), key: key.clone() };
                let entry = match Template::parse(template_name, source.clone(), text) {
                    Ok(t) => {
                        changes.push(Change::Valid { template: template_name.to_string(), source: source.clone() });
                        Entry { source, serving: Some(Arc::new(t)), error: None, text_hash: hash }
                    }
                    Err(e) => {
                        let serving = old.and_then(|o| o.serving.clone());
                        changes.push(Change::Invalid {
                            template: template_name.to_string(),
                            source: source.clone(),
                            error: e.to_string(),
                            still_serving: serving.is_some(),
                        });
                        Entry { source, serving, error: Some(e.to_string()), text_hash: hash }
                    }
                };
                next.insert(template_name.to_string(), entry);
            }
            for (gone, entry) in &previous {
                if !next.contains_key(gone) {
                    changes.push(Change::Removed { template: gone.clone(), source: entry.source.clone() });
                }
            }
            state.by_config_map.insert(name.to_string(), next);
        }
        self.record(&changes);
        changes
    }

    /// Forgets a deleted ConfigMap's templates.
    pub fn remove_config_map(&self, name: &str) -> Vec<Change> {
        let removed = {
            let mut state = self.inner.state.write().unwrap_or_else(|p| p.into_inner());
            state.by_config_map.remove(name).unwrap_or_default()
        };
        let changes: Vec<Change> =
            removed.into_iter().map(|(template, e)| Change::Removed { template, source: e.source }).collect();
        self.record(&changes);
        changes
    }

    fn record(&self, changes: &[Change]) {
        let metrics = &self.inner.metrics;
        for change in changes {
            let (outcome, template) = match change {
                Change::Valid { template, .. } => ("valid", template),
                Change::Invalid { template, .. } => ("invalid", template),
                Change::Removed { template, .. } => ("removed", template),
            };
            metrics.template_reloads.get_or_create(&OutcomeLabels { outcome: outcome.into() }).inc();
            let valid = metrics.template_valid.get_or_create(&TemplateLabels { template: template.clone() });
            match change {
                Change::Valid { .. } => {
                    valid.set(1);
                }
                Change::Invalid { .. } => {
                    valid.set(0);
                }
                Change::Removed { .. } => {
                    drop(valid);
                    metrics.template_valid.remove(&TemplateLabels { template: template.clone() });
                }
            }
            change.log();
        }
        if !changes.is_empty() {
            self.inner.changes.send_modify(|n| *n = n.wrapping_add(1));
        }
    }

    /// Records that `config_map` has been listed (or found absent); the store is synced once all
    /// have.
    pub(crate) fn mark_synced(&self, config_map: &str) {
        let all = {
            let mut state = self.inner.state.write().unwrap_or_else(|p| p.into_inner());
            if !state.synced.iter().any(|c| c == config_map) {
                state.synced.push(config_map.to_string());
            }
            self.inner.config_maps.iter().all(|c| state.synced.contains(c))
        };
        if all && !self.is_synced() {
            tracing::info!(templates = self.statuses().len(), "templates loaded");
            self.inner.synced.send_replace(true);
        }
    }

    /// Watches every configured ConfigMap until the future is dropped.
    pub async fn run(self, client: Client, health: Health) {
        let recorder = Recorder::new(
            client.clone(),
            Reporter { controller: "kube-job-launcher".into(), instance: std::env::var("HOSTNAME").ok() },
        );
        let watches = self.inner.config_maps.clone().into_iter().map(|cm| {
            let store = self.clone();
            let api: Api<ConfigMap> = Api::namespaced(client.clone(), &self.inner.namespace);
            let (recorder, health) = (recorder.clone(), health.clone());
            async move { store.watch_config_map(api, cm, recorder, health).await }
        });
        futures::future::join_all(watches).await;
    }

    async fn watch_config_map(&self, api: Api<ConfigMap>, name: String, recorder: Recorder, health: Health) {
        let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
        let mut stream = std::pin::pin!(watcher(api, config).default_backoff());
        let mut seen_in_list = false;
        let watch_name = format!("ConfigMap {name}");
        let mut failing = false;
        while let Some(event) = stream.next().await {
            if event.is_err() != failing {
                failing = event.is_err();
                if failing { health.watch_failed(&watch_name) } else { health.watch_recovered(&watch_name) }
            }
            match event {
                Ok(watcher::Event::Init) => seen_in_list = false,
                Ok(watcher::Event::InitApply(cm) | watcher::Event::Apply(cm)) => {
                    seen_in_list = true;
                    let changes = self.apply_config_map(&name, &cm.data.clone().unwrap_or_default());
                    publish_events(&recorder, &cm, &changes);
                }
                Ok(watcher::Event::Delete(_)) => {
                    self.remove_config_map(&name);
                }
                Ok(watcher::Event::InitDone) => {
                    if !seen_in_list {
                        self.remove_config_map(&name);
                        tracing::warn!(config_map = %name, namespace = %self.inner.namespace, "template ConfigMap not found; its templates are not served until it exists");
                    }
                    self.mark_synced(&name);
                }
                Err(error) => tracing::warn!(config_map = %name, %error, "ConfigMap watch failed; retrying"),
            }
        }
    }
}

/// A change of one template, for the log, metrics and Events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Valid { template: String, source: TemplateSource },
    Invalid { template: String, source: TemplateSource, error: String, still_serving: bool },
    Removed { template: String, source: TemplateSource },
}

impl Change {
    fn log(&self) {
        match self {
            Change::Valid { template, source } => {
                tracing::info!(%template, config_map = %source.config_map, key = %source.key, "template loaded")
            }
            Change::Invalid { template, source, error, still_serving } => tracing::warn!(
                %template, config_map = %source.config_map, key = %source.key, %error, still_serving,
                "invalid template version; {}",
                if *still_serving { "the last valid version keeps serving" } else { "the template is not served" }
            ),
            Change::Removed { template, source } => {
                tracing::info!(%template, config_map = %source.config_map, key = %source.key, "template removed")
            }
        }
    }
}

fn publish_events(recorder: &Recorder, cm: &ConfigMap, changes: &[Change]) {
    for change in changes {
        let Change::Invalid { template, source, error, still_serving } = change else { continue };
        let note = format!(
            "template {template} (key {}): {error}; {}",
            source.key,
            if *still_serving { "the last valid version keeps serving" } else { "not served" }
        );
        let event = Event {
            type_: EventType::Warning,
            reason: "InvalidTemplate".into(),
            // Events notes are limited to 1 kB.
            note: Some(note.chars().take(1000).collect()),
            action: "LoadTemplate".into(),
            secondary: None,
        };
        let reference = cm.object_ref(&());
        let recorder = recorder.clone();
        let cm_name = cm.name_any();
        tokio::spawn(async move {
            if let Err(error) = recorder.publish(&event, &reference).await {
                tracing::debug!(config_map = %cm_name, %error, "cannot record the InvalidTemplate Event");
            }
        });
    }
}

fn status_of(name: String, e: &Entry) -> TemplateView {
    let serving = e.serving.as_deref();
    TemplateView {
        name,
        status: if e.error.is_some() { Validity::Invalid } else { Validity::Valid },
        error: e.error.clone(),
        serving: serving.is_some(),
        parameters: serving
            .map(|t| {
                t.parameters
                    .iter()
                    .map(|p| ParameterView {
                        name: p.name.clone(),
                        required: p.required,
                        default: p.default.clone(),
                        pattern: p.pattern.clone(),
                        description: p.description.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default(),
        env_containers: serving.map(Template::env_targets).unwrap_or_default(),
        allowed_env: serving.and_then(Template::allowed_env_pattern),
        settable_env: serving.map(|t| t.settable_env.iter().cloned().collect()).unwrap_or_default(),
        max_active: serving.and_then(|t| t.max_active),
        warnings: serving.map(|t| t.warnings.clone()).unwrap_or_default(),
        source: e.source.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = include_str!("../../deploy/helm/kube-job-launcher/files/job-template.yaml");

    fn store() -> TemplateStore {
        TemplateStore::new("ns", vec!["first".into(), "second".into()], Metrics::new())
    }

    fn data(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn keys_name_templates_by_their_extension() {
        assert_eq!(template_name("job-template.yaml"), Some("job-template"));
        assert_eq!(template_name("a.yml"), Some("a"));
        assert_eq!(template_name("b.json"), Some("b"));
        assert_eq!(template_name("README.md"), None);
        assert_eq!(template_name(".yaml"), None);
    }

    #[test]
    fn an_invalid_update_keeps_the_last_valid_version_serving() {
        let s = store();
        s.apply_config_map("first", &data(&[("job-template.yaml", VALID)]));
        let changes = s.apply_config_map("first", &data(&[("job-template.yaml", "kind: [broken")]));
        assert!(matches!(&changes[..], [Change::Invalid { still_serving: true, .. }]));
        assert!(matches!(s.lookup("job-template"), TemplateLookup::Found(_)));
        let status = s.status("job-template").expect("status");
        assert_eq!(status.status, Validity::Invalid);
        assert!(status.serving);
        assert!(status.error.is_some_and(|e| e.contains("YAML")));
        // Fixed again: valid, error cleared.
        s.apply_config_map("first", &data(&[("job-template.yaml", VALID)]));
        assert_eq!(s.status("job-template").map(|st| st.status), Some(Validity::Valid));
    }

    #[test]
    fn a_template_that_was_never_valid_is_reported_and_not_served() {
        let s = store();
        s.apply_config_map("first", &data(&[("bad.yaml", "apiVersion: v1\nkind: Pod\n")]));
        assert!(matches!(s.lookup("bad"), TemplateLookup::Invalid(e) if e.contains("batch/v1 Job")));
        assert!(!s.status("bad").expect("status").serving);
    }

    #[test]
    fn an_unchanged_relist_reports_nothing() {
        let s = store();
        assert_eq!(s.apply_config_map("first", &data(&[("t.yaml", VALID)])).len(), 1);
        assert!(s.apply_config_map("first", &data(&[("t.yaml", VALID)])).is_empty());
    }

    #[test]
    fn removed_keys_and_config_maps_take_their_templates_with_them() {
        let s = store();
        s.apply_config_map("first", &data(&[("a.yaml", VALID), ("b.yaml", VALID), ("notes.txt", "x")]));
        assert_eq!(s.statuses().len(), 2, "non-template keys are ignored");
        let changes = s.apply_config_map("first", &data(&[("a.yaml", VALID)]));
        assert!(matches!(&changes[..], [Change::Removed { template, .. }] if template == "b"));
        assert!(matches!(s.lookup("b"), TemplateLookup::Missing(known) if known == vec!["a".to_string()]));
        s.remove_config_map("first");
        assert!(matches!(s.lookup("a"), TemplateLookup::Missing(_)));
    }

    #[test]
    fn the_first_config_map_in_flag_order_wins_a_name() {
        let s = store();
        s.apply_config_map("second", &data(&[("t.yaml", VALID)]));
        s.apply_config_map("first", &data(&[("t.yaml", &VALID.replace("target-job", "first-one"))]));
        let TemplateLookup::Found(t) = s.lookup("t") else { panic!("found") };
        assert_eq!(t.source.config_map, "first");
    }

    #[test]
    fn reloads_are_counted_by_outcome() {
        let s = store();
        s.apply_config_map("first", &data(&[("t.yaml", VALID)]));
        s.apply_config_map("first", &data(&[("t.yaml", "{")]));
        let text = s.inner.metrics.encode();
        assert!(text.contains("job_launcher_template_reloads_total{outcome=\"valid\"} 1"), "{text}");
        assert!(text.contains("job_launcher_template_reloads_total{outcome=\"invalid\"} 1"), "{text}");
        assert!(text.contains("job_launcher_template_valid{template=\"t\"} 0"), "{text}");
    }
}
