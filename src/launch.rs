//! Launching: a [`LaunchRequest`] becomes exactly one Job. The Job's name is derived from the
//! request's idempotency key, so a retried or duplicated request finds the Job its first attempt
//! created instead of creating a second one.

pub mod manifest;
pub mod naming;
pub mod notice_policy;
pub mod origin;

use std::{sync::Arc, time::Duration};

use k8s_openapi::api::batch::v1::Job;
use kube::{Api, Client, api::PostParams};
use serde_json::Value;
use tokio::{sync::watch, time::Instant};

use crate::{
    admission::{self, Caps},
    api::{JobView, LaunchRequest, MAX_KEY_LEN},
    error::{Error, Result, is_transient_kube_error},
    jobs::{JobIndex, index::slim_job_record, job_view, remote, slim::SlimJob},
    keys,
    leader::Leadership,
    telemetry::{LaunchLabels, Metrics, SourceLabels},
    template::{RenderInput, Template, TemplateLookup, TemplateStore},
};
pub use manifest::JobIdentity;
pub use notice_policy::{NoticePolicy, NoticeTargets};
pub use origin::{ANONYMOUS, Origin, Source, sqs_caller};

/// The outcome of a launch.
#[derive(Debug, Clone)]
pub enum Launched {
    /// This request created the Job.
    Created(JobView),
    /// An earlier identical request created it; nothing new was made.
    Existing(JobView),
}

impl Launched {
    pub fn view(&self) -> &JobView {
        match self {
            Self::Created(v) | Self::Existing(v) => v,
        }
    }
}

#[derive(Debug, Clone)]
pub struct LaunchSettings {
    /// This launcher's instance: its Jobs carry it, and keyed names are scoped to it.
    pub instance: String,
    /// Which completion notices launches may ask for.
    pub notices: NoticePolicy,
    pub caps: Caps,
    pub default_template: String,
    pub default_ttl_seconds: i64,
    /// How long one launch may take, retries included.
    pub timeout: Duration,
}

/// The template label of launches that named no template that exists.
pub const UNKNOWN_TEMPLATE: &str = "unknown";

/// How long a caller is asked to wait when the queue is full.
pub const QUEUE_FULL_RETRY: Duration = Duration::from_secs(2);

struct Inner {
    /// Launches of this process that passed the queue check and are still creating: they count
    /// as queued, so concurrent launches cannot overshoot --max-queued together.
    reserved: std::sync::atomic::AtomicU64,
    leadership: Leadership,
    client: Client,
    namespace: String,
    templates: TemplateStore,
    jobs: JobIndex,
    settings: LaunchSettings,
    metrics: Metrics,
}

/// Turns requests into Jobs. Shared by every source (HTTP, SQS, CLI); cheap to clone.
#[derive(Clone)]
pub struct Launcher {
    inner: Arc<Inner>,
}

/// A request made ready to create: its name, manifest and fingerprint.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub name: String,
    pub template: String,
    pub manifest: Value,
    pub request_hash: String,
    pub keyed: bool,
    /// For a keyed request, the name an earlier release gave the same key (see
    /// [`naming::legacy_keyed_suffix`]).
    pub legacy_name: Option<String>,
}

impl Launcher {
    pub fn new(
        client: Client,
        namespace: &str,
        templates: TemplateStore,
        jobs: JobIndex,
        settings: LaunchSettings,
        metrics: Metrics,
        leadership: Leadership,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                reserved: Default::default(),
                leadership,
                client,
                namespace: namespace.to_string(),
                templates,
                jobs,
                settings,
                metrics,
            }),
        }
    }

    pub fn namespace(&self) -> &str {
        &self.inner.namespace
    }

    pub fn templates(&self) -> &TemplateStore {
        &self.inner.templates
    }

    pub fn jobs(&self) -> &JobIndex {
        &self.inner.jobs
    }

    pub fn client(&self) -> &Client {
        &self.inner.client
    }

    pub fn settings(&self) -> &LaunchSettings {
        &self.inner.settings
    }

    /// Queued and active Jobs, as admission counts them.
    fn queue_counts(&self) -> (u64, u64) {
        self.inner.jobs.read(admission::counts)
    }

    /// When launches should wait because the queue is full: how long before trying again.
    /// Sources that can hold their input (SQS) take no more while this is Some.
    pub fn backpressure(&self) -> Option<Duration> {
        let max = self.inner.settings.caps.max_queued?;
        (self.queue_counts().0 >= u64::from(max)).then_some(QUEUE_FULL_RETRY)
    }

    /// How many more Jobs can be created now without the queue refusing them (`--max-queued`,
    /// less the launches in progress); None without a queue limit. Sources that cannot give
    /// their input back without cost (SQS: every receive counts towards a redrive policy) take
    /// no more than this.
    pub fn launch_room(&self) -> Option<u64> {
        let max = self.inner.settings.caps.max_queued?;
        let reserved = self.inner.reserved.load(std::sync::atomic::Ordering::SeqCst);
        Some(u64::from(max).saturating_sub(self.queue_counts().0 + reserved))
    }

    /// The name of the Job `request` would make, if one by that name exists (the index, else the
    /// API server): whether a message that keeps coming back has launched after all.
    pub async fn existing_job(&self, request: &LaunchRequest, origin: &Origin) -> Result<Option<String>> {
        let prepared = self.prepare(request, origin)?;
        if self.inner.jobs.record(&prepared.name).is_some() {
            return Ok(Some(prepared.name));
        }
        Ok(self.fetch(&prepared.name).await?.map(|r| r.name.to_string()))
    }

    /// How many more Jobs would be admitted now; None without a global cap.
    pub fn admission_room(&self) -> Option<u64> {
        let max = self.inner.settings.caps.max_active?;
        let (queued, active) = self.queue_counts();
        Some(u64::from(max).saturating_sub(queued + active))
    }

    /// Resolves once templates and the Job index are loaded, or when `stop` is set; true when
    /// ready. Workers that take input they cannot give back at once (SQS) wait for this.
    pub async fn ready(&self, stop: &watch::Receiver<bool>) -> bool {
        let mut stop = stop.clone();
        tokio::select! {
            () = async { tokio::join!(self.inner.templates.synced(), self.inner.jobs.synced()); } => true,
            _ = stop.wait_for(|s| *s) => false,
        }
    }

    /// Whether this replica holds the lease: only the leader does the work that one replica
    /// must do alone (admission, scale-mode polling).
    pub fn may_lead(&self) -> bool {
        self.inner.leadership.is_leading()
    }

    /// This replica's leadership, by its own clock.
    pub fn leadership(&self) -> &Leadership {
        &self.inner.leadership
    }

    /// The template a request names (or the default one), if it is served.
    pub fn template_for(&self, request: &LaunchRequest) -> Result<Arc<Template>> {
        // Before the first list, "no such template" would be a guess: a dead letter or a 404
        // for a template that exists.
        if !self.inner.templates.is_synced() {
            return Err(Error::TemplatesLoading);
        }
        let name = request.template.as_deref().unwrap_or(&self.inner.settings.default_template);
        match self.inner.templates.lookup(name) {
            TemplateLookup::Found(t) => Ok(t),
            TemplateLookup::Invalid(error) => Err(Error::TemplateInvalid { name: name.to_string(), error }),
            TemplateLookup::Missing(known) => Err(Error::UnknownTemplate {
                name: name.to_string(),
                known: if known.is_empty() { "none".into() } else { known.join(", ") },
            }),
        }
    }

    /// Everything short of creating: the template rendered and the Job named and labelled.
    pub fn prepare(&self, request: &LaunchRequest, origin: &Origin) -> Result<Prepared> {
        let template = self.template_for(request)?;
        let settings = &self.inner.settings;
        let job = JobSettings {
            namespace: &self.inner.namespace,
            instance: &settings.instance,
            default_ttl_seconds: settings.default_ttl_seconds,
            globally_capped: settings.caps.max_active.is_some(),
            notices: &settings.notices,
        };
        prepare(&template, request, origin, &job)
    }

    /// Creates the request's Job, or finds the one an identical earlier request created.
    pub async fn launch(&self, request: &LaunchRequest, origin: &Origin) -> Result<Launched> {
        let started = Instant::now();
        // Only templates that exist name a metric series: a caller cannot grow the metrics with
        // names of its own.
        let mut template_label = UNKNOWN_TEMPLATE.to_string();
        let result = match self.prepare(request, origin) {
            Ok(prepared) => match self.reserve_queue_room(&prepared) {
                Ok(reservation) => {
                    template_label.clone_from(&prepared.template);
                    let created = self.create(prepared, request, origin, started + self.inner.settings.timeout).await;
                    drop(reservation);
                    created
                }
                Err(e) => {
                    template_label.clone_from(&prepared.template);
                    Err(e)
                }
            },
            Err(e) => Err(e),
        };
        let outcome = match &result {
            Ok(Launched::Created(_)) => "created",
            Ok(Launched::Existing(_)) => "existing",
            Err(e) => e.metric_label(),
        };
        let metrics = &self.inner.metrics;
        metrics
            .launches
            .get_or_create(&LaunchLabels {
                source: origin.source.as_str().into(),
                template: template_label,
                outcome: outcome.into(),
            })
            .inc();
        if result.is_ok() {
            metrics
                .launch_duration
                .get_or_create(&SourceLabels { source: origin.source.as_str().into() })
                .observe(started.elapsed().as_secs_f64());
        }
        match &result {
            Ok(l) => {
                tracing::info!(job = %l.view().name, outcome, source = origin.source.as_str(), caller = %origin.caller, request_id = origin.request_id.as_deref(), "launch")
            }
            Err(e) => {
                tracing::info!(outcome, error = %e, source = origin.source.as_str(), caller = %origin.caller, request_id = origin.request_id.as_deref(), "launch refused")
            }
        }
        result
    }

    /// Holds a place in the queue for a new Job, or refuses it when the queue is full. A replay
    /// of a Job that exists still answers.
    fn reserve_queue_room(&self, prepared: &Prepared) -> Result<Option<Reservation>> {
        use std::sync::atomic::Ordering;
        let Some(max) = self.inner.settings.caps.max_queued else { return Ok(None) };
        if prepared.keyed && self.inner.jobs.record(&prepared.name).is_some() {
            return Ok(None);
        }
        let reserved = self.inner.reserved.fetch_add(1, Ordering::SeqCst) + 1;
        let reservation = Reservation(self.inner.clone());
        let queued = self.queue_counts().0 + reserved;
        if queued <= u64::from(max) {
            return Ok(Some(reservation));
        }
        Err(Error::QueueFull { queued: (queued - 1) as usize, retry_after: QUEUE_FULL_RETRY })
    }

    async fn create(
        &self,
        mut prepared: Prepared,
        request: &LaunchRequest,
        origin: &Origin,
        deadline: Instant,
    ) -> Result<Launched> {
        if let Some(found) = self.legacy_job(&prepared, request, origin)? {
            return Ok(found);
        }
        let api: Api<SlimJob> = Api::namespaced(self.inner.client.clone(), &self.inner.namespace);
        let mut backoff = Backoff::new(deadline);
        let deadline = backoff.deadline;
        // Set once a create may have reached the server without us hearing back.
        let mut maybe_created = false;
        loop {
            match within(deadline, self.post_job(&api, &prepared.manifest)).await {
                Ok(created) => {
                    self.inner.jobs.observe_created(&created);
                    return Ok(Launched::Created(self.view_of(&created)));
                }
                Err(kube::Error::Api(status)) if status.is_already_exists() => {
                    let Some(existing) = self.get_job(&api, &prepared.name, &mut backoff).await? else {
                        // Deleted between our create and our read: try again.
                        continue;
                    };
                    let managed =
                        existing.metadata.labels.as_ref().and_then(|l| l.get(keys::MANAGED_BY)).map(String::as_str)
                            == Some(keys::MANAGED_BY_VALUE);
                    let hash = existing.metadata.annotations.as_ref().and_then(|a| a.get(keys::REQUEST_HASH));
                    if !managed {
                        return Err(Error::NameTaken(prepared.name));
                    }
                    if hash == Some(&prepared.request_hash) {
                        self.inner.jobs.observe_created(&existing);
                        let view = self.view_of(&existing);
                        // Without a key the name was ours alone: finding it means our own earlier
                        // attempt got through.
                        return Ok(if maybe_created || !prepared.keyed {
                            Launched::Created(view)
                        } else {
                            Launched::Existing(view)
                        });
                    }
                    if prepared.keyed {
                        return Err(Error::KeyReused {
                            key: request.idempotency_key.clone().unwrap_or_default(),
                            job: prepared.name,
                        });
                    }
                    // A random name met another Job: pick another.
                    prepared = self.prepare(request, origin)?;
                }
                Err(e) if is_transient_kube_error(&e) => {
                    maybe_created = true;
                    if !backoff.wait().await {
                        return Err(Error::KubeUnavailable(e));
                    }
                }
                Err(kube::Error::Api(status)) if status.code == 422 || status.code == 400 => {
                    return Err(Error::JobRejected(status.message.clone()));
                }
                Err(e) => return Err(Error::from_kube(e)),
            }
        }
    }

    /// The Job an earlier release made for the same key, under its old name (`<template>-<hash of
    /// namespace, template, key>`): a retry across the upgrade must not launch twice. It counts
    /// only when it was the same caller's (or recorded no caller, as Jobs of unauthenticated
    /// releases did not).
    fn legacy_job(&self, prepared: &Prepared, request: &LaunchRequest, origin: &Origin) -> Result<Option<Launched>> {
        let Some(legacy) = &prepared.legacy_name else { return Ok(None) };
        let Some(record) = self.inner.jobs.record(legacy) else { return Ok(None) };
        if record.requested_by.as_deref().is_some_and(|by| by != origin.caller) {
            return Ok(None);
        }
        if !record.request_hash.as_ref().is_some_and(|h| h.is(&prepared.request_hash)) {
            return Err(Error::KeyReused {
                key: request.idempotency_key.clone().unwrap_or_default(),
                job: legacy.clone(),
            });
        }
        Ok(self.inner.jobs.view(legacy).map(Launched::Existing))
    }

    /// Creates the Job of a rendered manifest, sent as it is, and decodes only what the index
    /// reads of the answer. A template is refused at load unless every rendering of it is a Job
    /// (`Template::check_renders`: parameters fill strings only), so the manifest is not turned
    /// into a `Job` and back on its way; the API server checks it again. Building and dropping
    /// the full `Job` each way cost about an eighth of a launch's CPU (a profile of 2,000
    /// launches: 6 % decoding the answer, 3 % converting the manifest, 3 % dropping them).
    async fn post_job(&self, api: &Api<SlimJob>, manifest: &Value) -> kube::Result<SlimJob> {
        let body = serde_json::to_vec(manifest).map_err(kube::Error::SerdeError)?;
        let mut request = kube::core::Request::new(api.resource_url())
            .create(&PostParams::default(), body)
            .map_err(kube::Error::BuildRequest)?;
        // As `Api::create` names its requests, for the client's tracing and metrics.
        request.extensions_mut().insert("create");
        self.inner.client.request::<SlimJob>(request).await
    }

    async fn get_job(&self, api: &Api<SlimJob>, name: &str, backoff: &mut Backoff) -> Result<Option<SlimJob>> {
        loop {
            match within(backoff.deadline, api.get_opt(name)).await {
                Ok(job) => return Ok(job),
                Err(e) if is_transient_kube_error(&e) => {
                    if !backoff.wait().await {
                        return Err(Error::KubeUnavailable(e));
                    }
                }
                Err(e) => return Err(Error::from_kube(e)),
            }
        }
    }

    /// A managed Job's view: from the index, else from the API server (a Job another replica has
    /// just created, before this replica's watch shows it), if it carries this instance's labels.
    pub async fn find(&self, name: &str) -> Result<Option<JobView>> {
        if let Some(view) = self.inner.jobs.view(name) {
            return Ok(Some(view));
        }
        Ok(self.fetch(name).await?.map(|record| job_view(&self.inner.namespace, &record, &[])))
    }

    /// As [`find`](Self::find), with the view's stream event id (see `jobs::events`).
    pub async fn find_with_id(&self, name: &str) -> Result<Option<(JobView, u64)>> {
        Ok(self.fetch(name).await?.map(|record| {
            let id = record.event_id(&[]);
            (job_view(&self.inner.namespace, &record, &[]), id)
        }))
    }

    async fn fetch(&self, name: &str) -> Result<Option<crate::jobs::JobRecord>> {
        let api: Api<Job> = Api::namespaced(self.inner.client.clone(), &self.inner.namespace);
        let fetch = remote::fetch(&api, name, &self.inner.settings.instance);
        tokio::time::timeout(self.inner.settings.timeout, fetch).await.unwrap_or_else(|_| Err(deadline_elapsed()))
    }

    /// Cancels Job `name`: deletes, in the foreground, the Job the index (or the API server)
    /// shows, by its UID. Returns the Job as last seen.
    pub async fn cancel(&self, name: &str) -> Result<JobView> {
        let record = match self.inner.jobs.record(name) {
            Some(record) => record,
            None => self.fetch(name).await?.ok_or_else(|| Error::JobNotFound(name.to_string()))?,
        };
        let view = self.inner.jobs.view(name).unwrap_or_else(|| job_view(&self.inner.namespace, &record, &[]));
        let api: Api<Job> = Api::namespaced(self.inner.client.clone(), &self.inner.namespace);
        let cancel = remote::cancel(&api, &record);
        tokio::time::timeout(self.inner.settings.timeout, cancel).await.unwrap_or_else(|_| Err(deadline_elapsed()))?;
        tracing::info!(job = %name, uid = record.uid.as_ref().map(ToString::to_string), "cancelled");
        Ok(view)
    }

    fn view_of(&self, job: &SlimJob) -> JobView {
        let name = job.metadata.name.clone().unwrap_or_default();
        self.inner.jobs.view(&name).unwrap_or_else(|| {
            let record = slim_job_record(job).unwrap_or_else(|| crate::jobs::JobRecord::named(&name));
            job_view(&self.inner.namespace, &record, &[])
        })
    }
}

/// A place held in the queue while a Job is being created; released when dropped.
struct Reservation(Arc<Inner>);

impl Drop for Reservation {
    fn drop(&mut self) {
        self.0.reserved.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// The launch's deadline passed while an API call was still waiting for its answer.
#[derive(Debug, thiserror::Error)]
#[error("no answer from the Kubernetes API server before the launch deadline")]
struct DeadlineElapsed;

/// The error of a call that got no answer before its deadline: transient (HTTP 503).
fn deadline_elapsed() -> Error {
    Error::KubeUnavailable(kube::Error::Service(Box::new(DeadlineElapsed)))
}

/// Runs one API call, giving up at `deadline`: a call that hangs (etcd down, a stalled
/// connection) must not hold the launch past it. Giving up counts as a transient failure.
async fn within<T>(deadline: Instant, call: impl Future<Output = kube::Result<T>>) -> kube::Result<T> {
    match tokio::time::timeout_at(deadline, call).await {
        Ok(result) => result,
        Err(_) => Err(kube::Error::Service(Box::new(DeadlineElapsed))),
    }
}

/// What, besides the template and the request, decides a Job's manifest.
#[derive(Debug, Clone, Copy)]
pub struct JobSettings<'a> {
    /// The launcher's namespace and instance: keyed Job names depend on them.
    pub namespace: &'a str,
    pub instance: &'a str,
    pub default_ttl_seconds: i64,
    /// Whether a global --max-active applies (then every Job queues).
    pub globally_capped: bool,
    pub notices: &'a NoticePolicy,
}

/// Everything short of creating, without a cluster: the request checked, the template rendered,
/// the Job named, labelled and annotated. The server and the CLI's offline render share it.
pub fn prepare(
    template: &Template,
    request: &LaunchRequest,
    origin: &Origin,
    job: &JobSettings<'_>,
) -> Result<Prepared> {
    if let Some(key) = &request.idempotency_key
        && (key.is_empty() || key.len() > MAX_KEY_LEN || key.chars().any(char::is_control))
    {
        return Err(Error::InvalidRequest(format!(
            "idempotencyKey: 1 to {MAX_KEY_LEN} characters, no control characters"
        )));
    }
    let notices = job.notices.targets(request.notify.as_ref())?;
    let mut manifest = template.render(RenderInput {
        params: &request.params,
        env: &request.env,
        launcher_env: &origin.launcher_env,
        labels: &request.labels,
    })?;
    let (name, legacy_name) = match &request.idempotency_key {
        Some(key) => (
            naming::keyed_name(job.namespace, job.instance, &origin.caller, key),
            Some(naming::job_name(&template.name, &naming::legacy_keyed_suffix(job.namespace, &template.name, key))),
        ),
        None => (naming::job_name(&template.name, &naming::random_suffix()), None),
    };
    let request_hash = manifest::request_hash(&template.name, request, &origin.launcher_env);
    let capped = job.globally_capped || template.max_active.is_some();
    let identity = JobIdentity {
        name: &name,
        instance: job.instance,
        template: &template.name,
        origin,
        priority: request.priority,
        idempotency_key: request.idempotency_key.as_deref(),
        request_hash: &request_hash,
        ttl_seconds: template.ttl_seconds().unwrap_or(job.default_ttl_seconds),
        queued_at: capped.then(jiff::Timestamp::now),
        template_cap: template.max_active,
        notices: &notices,
    };
    manifest::apply_identity(&mut manifest, &identity);
    Ok(Prepared {
        name,
        template: template.name.clone(),
        manifest,
        request_hash,
        keyed: request.idempotency_key.is_some(),
        legacy_name,
    })
}

/// The pauses between a launch's attempts ([`retry::launch_calls`]), bounded by its deadline.
pub struct Backoff {
    delays: backon::ExponentialBackoff,
    deadline: Instant,
}

impl Backoff {
    pub fn new(deadline: Instant) -> Self {
        Self { delays: crate::retry::launch_calls(), deadline }
    }

    /// Sleeps before the next attempt; false when the deadline leaves no room for one.
    pub async fn wait(&mut self) -> bool {
        let Some(pause) = self.delays.next() else { return false };
        if Instant::now() + pause >= self.deadline {
            return false;
        }
        tokio::time::sleep(pause).await;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A launcher whose template store has not listed its ConfigMaps yet. Its client points at a
    /// closed port: nothing here may reach the API server.
    fn launcher_before_templates_load() -> Launcher {
        let client =
            kube::Client::try_from(kube::Config::new("http://127.0.0.1:9".parse().expect("a URL"))).expect("a client");
        let metrics = Metrics::new();
        let leader = Leadership::never();
        Launcher::new(
            client,
            "ns",
            TemplateStore::new("ns", vec!["job-template-cm".into()], metrics.clone()),
            JobIndex::new("ns"),
            LaunchSettings {
                instance: "default".into(),
                notices: NoticePolicy::default(),
                caps: Caps::default(),
                default_template: "default".into(),
                default_ttl_seconds: 3600,
                timeout: Duration::from_secs(1),
            },
            metrics,
            leader,
        )
    }

    use std::{
        collections::BTreeMap,
        sync::atomic::{AtomicUsize, Ordering},
    };

    use crate::fake_apiserver::{self, Received};

    const SEED: &str = include_str!("../deploy/helm/kube-job-launcher/files/job-template.yaml");

    /// A launcher with the seed template loaded, talking to a fake API server that `answer` runs.
    fn launcher_answered_by(answer: fake_apiserver::Answer) -> (Launcher, Arc<std::sync::Mutex<Vec<Received>>>) {
        fake_apiserver::launcher(answer, Caps::default(), &[("t.yaml", SEED)])
    }

    fn created(r: &Received) -> (u16, Value) {
        fake_apiserver::created(r)
    }

    fn exists() -> (u16, Value) {
        (409, fake_apiserver::status(409, "AlreadyExists", "jobs.batch \"k-1\" already exists"))
    }

    /// A Job of the launcher's with the request hash `hash`.
    fn existing_job(hash: &str, managed: bool) -> (u16, Value) {
        let labels = if managed { serde_json::json!({keys::MANAGED_BY: keys::MANAGED_BY_VALUE}) } else { Value::Null };
        (
            200,
            serde_json::json!({
                "apiVersion": "batch/v1", "kind": "Job",
                "metadata": {"name": "k-1", "uid": "uid-0", "labels": labels, "annotations": {keys::REQUEST_HASH: hash}},
                "spec": {"template": {}},
            }),
        )
    }

    fn keyed() -> LaunchRequest {
        LaunchRequest { idempotency_key: Some("key".into()), ..LaunchRequest::default() }
    }

    fn origin() -> Origin {
        Origin::new(Source::Http, "alice")
    }

    /// The request hash the launcher puts on its Jobs for `request`.
    fn hash_of(request: &LaunchRequest) -> String {
        manifest::request_hash("t", request, &BTreeMap::new())
    }

    #[tokio::test]
    async fn a_create_that_lands_is_created() {
        let (launcher, log) = launcher_answered_by(Box::new(created));
        let launched = launcher.launch(&keyed(), &origin()).await.expect("launched");
        assert!(matches!(launched, Launched::Created(ref v) if v.name.starts_with("k-")), "{launched:?}");
        assert_eq!(log.lock().expect("log").len(), 1, "one create, nothing else");
    }

    #[tokio::test]
    async fn a_name_taken_by_the_same_request_is_the_existing_job_and_by_another_is_a_409() {
        let same = hash_of(&keyed());
        let (launcher, _) =
            launcher_answered_by(Box::new(
                move |r| if r.method == "POST" { exists() } else { existing_job(&same, true) },
            ));
        let launched = launcher.launch(&keyed(), &origin()).await.expect("a replay");
        assert!(matches!(launched, Launched::Existing(_)), "{launched:?}");

        let (launcher, _) =
            launcher_answered_by(Box::new(|r| if r.method == "POST" { exists() } else { existing_job("other", true) }));
        let error = launcher.launch(&keyed(), &origin()).await.expect_err("another request under the key");
        assert!(matches!(error, Error::KeyReused { ref key, .. } if key == "key"), "{error:?}");

        let (launcher, _) =
            launcher_answered_by(Box::new(|r| if r.method == "POST" { exists() } else { existing_job("x", false) }));
        let error = launcher.launch(&keyed(), &origin()).await.expect_err("not the launcher's");
        assert!(matches!(error, Error::NameTaken(_)), "{error:?}");
    }

    #[tokio::test]
    async fn a_create_retried_after_no_answer_that_finds_its_own_job_is_created_not_a_replay() {
        let posts = AtomicUsize::new(0);
        let same = hash_of(&keyed());
        let (launcher, log) =
            launcher_answered_by(Box::new(move |r| match (r.method.as_str(), posts.load(Ordering::SeqCst)) {
                ("POST", 0) => {
                    posts.fetch_add(1, Ordering::SeqCst);
                    (503, fake_apiserver::status(503, "ServiceUnavailable", "etcd is slow"))
                }
                ("POST", _) => exists(),
                _ => existing_job(&same, true),
            }));
        let launched = launcher.launch(&keyed(), &origin()).await.expect("launched");
        assert!(matches!(launched, Launched::Created(_)), "the first attempt got through: {launched:?}");
        let methods: Vec<String> = log.lock().expect("log").iter().map(|r| r.method.clone()).collect();
        assert_eq!(methods, vec!["POST", "POST", "GET"]);
    }

    #[tokio::test]
    async fn a_job_the_api_server_refuses_is_the_callers_to_fix() {
        let (launcher, _) = launcher_answered_by(Box::new(|_| {
            (422, fake_apiserver::status(422, "Invalid", "Job.batch \"x\" is invalid: spec.template: required"))
        }));
        let error = launcher.launch(&LaunchRequest::default(), &origin()).await.expect_err("refused");
        assert!(matches!(error, Error::JobRejected(ref m) if m.contains("invalid")), "{error:?}");
        assert!(!error.is_transient(), "dead-lettered, not retried");
    }

    #[tokio::test]
    async fn a_launch_before_the_templates_load_is_retryable_not_unknown() {
        let launcher = launcher_before_templates_load();
        let error = launcher
            .launch(&LaunchRequest::default(), &Origin::new(Source::Sqs, "sqs:test"))
            .await
            .expect_err("no template can be served yet");
        assert!(matches!(error, Error::TemplatesLoading), "{error:?}");
        // SQS keeps such a message instead of dead-lettering it; HTTP answers 503.
        assert!(error.is_transient());
    }

    // Paused time: the runtime jumps the clock whenever every task waits, so the wait below
    // costs nothing and proves only that nothing made `ready` resolve.
    #[tokio::test(start_paused = true)]
    async fn ready_waits_for_templates_and_index_and_gives_up_on_stop() {
        let launcher = launcher_before_templates_load();
        let (stop_tx, stop) = watch::channel(false);
        let waiting = tokio::spawn({
            let launcher = launcher.clone();
            async move { launcher.ready(&stop).await }
        });
        tokio::time::sleep(Duration::from_secs(3600)).await;
        assert!(!waiting.is_finished(), "ready before anything was listed");
        stop_tx.send_replace(true);
        assert!(!waiting.await.expect("the wait ends"), "stopped, not ready");
    }
}
