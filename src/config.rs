//! The server's configuration: command-line flags, each with an environment fallback under the
//! prefix `JOB_LAUNCHER_`, one struct per subsystem, and the reference page generated from them.
//! The binary's command tree (`serve`, the CLI's commands) is assembled in `main.rs`.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::{Args, Parser};

#[derive(Debug, Clone, Args)]
pub struct LogArgs {
    /// Log filter, in tracing's EnvFilter syntax (e.g. `info,kube=warn`).
    #[arg(long = "log", env = "JOB_LAUNCHER_LOG", default_value = "info", global = true)]
    pub log_filter: String,

    /// Log format.
    #[arg(long, env = "JOB_LAUNCHER_LOG_FORMAT", value_enum, default_value = "text", global = true)]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub kube: KubeArgs,
    #[command(flatten)]
    pub http: HttpArgs,
    #[command(flatten)]
    pub templates: TemplateArgs,
    #[command(flatten)]
    pub launch: LaunchArgs,
    #[command(flatten)]
    pub sqs: SqsArgs,
    #[command(flatten)]
    pub admission: AdmissionArgs,
    #[command(flatten)]
    pub notify: NotifyArgs,
    #[command(flatten)]
    pub runtime: RuntimeArgs,
}

#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Runtime")]
pub struct RuntimeArgs {
    /// Threads that run the launcher's work (HTTP, watches, SQS, streams). One suits a launcher
    /// with a core or less: with more, the threads wake each other for each request, and a launch
    /// costs about a quarter more CPU (docs/benchmarks.md). Raise it only with several cores of
    /// the launcher's own and a CPU use that stays near one core.
    #[arg(long, env = "JOB_LAUNCHER_WORKER_THREADS", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub worker_threads: u16,
}

#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Completion notices")]
pub struct NotifyArgs {
    /// Webhook URLs a launch's `notify.url` may name: a regex the whole URL must match (none by
    /// default: such a request is refused). Needs --notify-secret-file.
    #[arg(long, env = "JOB_LAUNCHER_NOTIFY_URL_ALLOW", requires = "notify_secret_file")]
    pub notify_url_allow: Option<String>,

    /// The key webhook notices are signed with (HMAC-SHA256), the file's content without its
    /// trailing newline.
    #[arg(long, env = "JOB_LAUNCHER_NOTIFY_SECRET_FILE")]
    pub notify_secret_file: Option<PathBuf>,

    /// SQS queues a launch's `notify.sqsQueueUrl` (or an SQS message's `job-launcher-reply-to`
    /// attribute) may name: a regex the whole URL must match (none by default).
    #[arg(long, env = "JOB_LAUNCHER_NOTIFY_SQS_ALLOW")]
    pub notify_sqs_allow: Option<String>,

    /// An SQS queue that receives the final view of every Job that ends.
    #[arg(long, env = "JOB_LAUNCHER_NOTIFY_SQS_QUEUE_URL")]
    pub notify_sqs_queue_url: Option<String>,

    /// How long a notice is retried (connection errors, timeouts, 5xx, 408, 429) before it is
    /// given up.
    #[arg(long, env = "JOB_LAUNCHER_NOTIFY_RETRY_FOR", default_value = "1h", value_parser = parse_duration)]
    pub notify_retry_for: Duration,
}

/// `serve`'s flags on their own, for tests and tools that build an application without the
/// binary's command tree.
#[derive(Debug, Parser)]
#[command(name = "serve")]
struct ServeFlags {
    #[command(flatten)]
    args: ServeArgs,
}

impl ServeArgs {
    /// Parses `serve`'s flags (without the command's name), with the same environment fallbacks.
    pub fn try_parse_flags<I, T>(flags: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let argv = std::iter::once(std::ffi::OsString::from("serve")).chain(flags.into_iter().map(Into::into));
        ServeFlags::try_parse_from(argv).map(|f| f.args)
    }
}

#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Admission")]
pub struct AdmissionArgs {
    /// Most Jobs active at once; with a cap, Jobs are created suspended and admitted in order
    /// (priority, then queue time). Templates can set their own with `job-launcher.dev/max-active`.
    #[arg(long, env = "JOB_LAUNCHER_MAX_ACTIVE", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_active: Option<u32>,

    /// Most Jobs waiting in the queue; beyond it HTTP answers 429 and SQS messages stay in SQS.
    #[arg(long, env = "JOB_LAUNCHER_MAX_QUEUED", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_queued: Option<u32>,

    /// The Lease that elects the one replica that admits.
    #[arg(long, env = "JOB_LAUNCHER_LEADER_LEASE", default_value = "kube-job-launcher")]
    pub leader_lease: String,

    /// How long a leader that stopped renewing keeps the lease before another takes over. The
    /// leader renews every fifth of it and stops admitting two thirds into it without a renew.
    #[arg(long, env = "JOB_LAUNCHER_LEADER_LEASE_DURATION", default_value = "15s", value_parser = parse_lease_duration)]
    pub leader_lease_duration: Duration,

    /// How often admission re-checks the queue even without events (a safety net).
    #[arg(long, env = "JOB_LAUNCHER_ADMISSION_RESYNC", default_value = "10s", value_parser = parse_nonzero_duration)]
    pub admission_resync: Duration,
}

#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Kubernetes")]
pub struct KubeArgs {
    /// Namespace of the templates and of the Jobs the launcher creates. Defaults to the
    /// in-cluster service account's namespace, else the kubeconfig context's, else `default`.
    #[arg(long, env = "JOB_LAUNCHER_NAMESPACE")]
    pub namespace: Option<String>,

    /// This launcher's instance: its Jobs carry it (label `job-launcher.dev/instance`), it sees
    /// only Jobs that carry it, and keyed names are scoped to it; several releases can share a
    /// namespace. A label value: at most 63 characters.
    #[arg(long, env = "JOB_LAUNCHER_INSTANCE", default_value = "default", value_parser = parse_instance)]
    pub instance: String,

    /// At start, label the launcher's Jobs (and pods) that carry no instance, made before
    /// instances existed, with --instance. Only for a launcher alone in its namespace.
    #[arg(long, env = "JOB_LAUNCHER_ADOPT_UNLABELLED_JOBS")]
    pub adopt_unlabelled_jobs: bool,

    /// How long a watch (templates, Jobs, pods) may keep failing before /readyz says not ready;
    /// also how long admission waits for the templates to load before the caps recorded on Jobs
    /// apply.
    #[arg(long, env = "JOB_LAUNCHER_WATCH_FAILURE_BOUND", default_value = "30s", value_parser = parse_nonzero_duration)]
    pub watch_failure_bound: Duration,
}

#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "HTTP")]
pub struct HttpArgs {
    /// Address of the API.
    #[arg(long, env = "JOB_LAUNCHER_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,

    /// Address of /healthz, /readyz and /metrics (no auth).
    #[arg(long, env = "JOB_LAUNCHER_ADMIN_LISTEN", default_value = "0.0.0.0:9090")]
    pub admin_listen: SocketAddr,

    /// How callers authenticate: `token-file` (bearer tokens from --auth-token-file) or
    /// `kubernetes` (any token the cluster accepts, checked with TokenReview and
    /// SubjectAccessReview). Default: token-file when a file is given.
    #[arg(long, env = "JOB_LAUNCHER_AUTH", value_enum)]
    pub auth: Option<AuthMode>,

    /// File of bearer tokens the API accepts, in kube-apiserver's static token format
    /// (`token,user,uid[,"group1,group2"]`; the user is the caller); re-read when it changes.
    #[arg(long, env = "JOB_LAUNCHER_AUTH_TOKEN_FILE")]
    pub auth_token_file: Option<PathBuf>,

    /// Kubernetes auth: one verb every action needs on --auth-resource, instead of one per
    /// action (`create` launches, `get` reads one thing, `list` reads lists, the queue and
    /// streams, `delete` cancels).
    #[arg(long, env = "JOB_LAUNCHER_AUTH_VERB")]
    pub auth_verb: Option<String>,

    /// Kubernetes auth: the API group of --auth-resource (empty for the core group).
    #[arg(long, env = "JOB_LAUNCHER_AUTH_GROUP", default_value = "job-launcher.dev")]
    pub auth_group: String,

    /// Kubernetes auth: the resource callers need each action's verb on, in the launcher's
    /// namespace. No such resource has to exist: RBAC grants verbs on any name, and this one
    /// grants nothing else.
    #[arg(long, env = "JOB_LAUNCHER_AUTH_RESOURCE", default_value = "launches")]
    pub auth_resource: String,

    /// Kubernetes auth: accept only tokens minted for this audience (TokenReview audiences), e.g.
    /// `kubectl create token SA --audience AUD`.
    #[arg(long, env = "JOB_LAUNCHER_AUTH_AUDIENCE")]
    pub auth_audience: Option<String>,

    /// Kubernetes auth: how long a review's answer is reused (0: not at all).
    #[arg(long, env = "JOB_LAUNCHER_AUTH_CACHE_TTL", default_value = "10s", value_parser = parse_duration)]
    pub auth_cache_ttl: Duration,

    /// Longest a request may take before its answer starts (a 408 after it); log streams are
    /// not cut once they have started.
    #[arg(long, env = "JOB_LAUNCHER_REQUEST_TIMEOUT", default_value = "30s", value_parser = parse_nonzero_duration)]
    pub request_timeout: Duration,

    /// Most API requests in progress at once; more get 503 with Retry-After.
    #[arg(long, env = "JOB_LAUNCHER_MAX_CONCURRENT_REQUESTS", default_value_t = 512)]
    pub max_concurrent_requests: usize,

    /// Most status streams (`/v1/events`, `/v1/jobs/{name}/events`) open at once; more get 503
    /// with Retry-After. Streams do not count against --max-concurrent-requests.
    #[arg(long, env = "JOB_LAUNCHER_MAX_STREAMS", default_value_t = 1024)]
    pub max_streams: usize,

    /// Time a client has to send a request's line and headers.
    #[arg(long, env = "JOB_LAUNCHER_HEADER_READ_TIMEOUT", default_value = "10s", value_parser = parse_nonzero_duration)]
    pub header_read_timeout: Duration,

    /// Largest request head (line and headers), in bytes.
    #[arg(long, env = "JOB_LAUNCHER_MAX_HEADER_BYTES", default_value_t = 16 * 1024)]
    pub max_header_bytes: usize,

    /// Serve the built-in web dashboard under /ui/ on the API port (`--ui=false` turns it off).
    /// Its pages are public; everything they show comes from the API, with the same auth: with
    /// a token file or Kubernetes auth, its login keeps the token in an HttpOnly cookie.
    #[arg(
        long,
        env = "JOB_LAUNCHER_UI",
        default_value_t = true,
        num_args = 0..=1,
        default_missing_value = "true",
        action = clap::ArgAction::Set,
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub ui: bool,

    /// Serve the API without auth on a non-loopback address (behind a proxy that authenticates).
    #[arg(long, env = "JOB_LAUNCHER_INSECURE_NO_AUTH")]
    pub insecure_no_auth: bool,

    /// Without auth: Host names the API answers besides loopback ones (a foreign Host is refused,
    /// against DNS rebinding), e.g. the Service's names behind --insecure-no-auth.
    #[arg(long, env = "JOB_LAUNCHER_ALLOWED_HOSTS", value_delimiter = ',')]
    pub allowed_hosts: Vec<String>,

    /// Certificate chain (PEM) for TLS on the API port; re-read when it changes (a renewed
    /// Secret's symlink swap included).
    #[arg(long, env = "JOB_LAUNCHER_TLS_CERT_FILE", requires = "tls_key_file")]
    pub tls_cert_file: Option<PathBuf>,

    /// Private key (PEM) for --tls-cert-file.
    #[arg(long, env = "JOB_LAUNCHER_TLS_KEY_FILE", requires = "tls_cert_file")]
    pub tls_key_file: Option<PathBuf>,

    /// After SIGTERM, how long the launcher keeps serving with /readyz false before it closes its
    /// listeners, so that load balancers and Service endpoints stop sending to it first (0: none).
    #[arg(long, env = "JOB_LAUNCHER_SHUTDOWN_DELAY", default_value = "0s", value_parser = parse_duration)]
    pub shutdown_delay: Duration,

    /// How long in-flight requests may take to finish after SIGTERM (0: none).
    #[arg(long, env = "JOB_LAUNCHER_SHUTDOWN_GRACE", default_value = "25s", value_parser = parse_duration)]
    pub shutdown_grace: Duration,
}

#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Templates")]
pub struct TemplateArgs {
    /// ConfigMap holding templates (repeatable); each `.yaml`, `.yml` or `.json` key is one.
    #[arg(
        long = "template-configmap",
        env = "JOB_LAUNCHER_TEMPLATE_CONFIGMAP",
        value_delimiter = ',',
        default_value = "job-template-cm"
    )]
    pub config_maps: Vec<String>,

    /// Template for requests that name none.
    #[arg(long, env = "JOB_LAUNCHER_DEFAULT_TEMPLATE", default_value = "job-template")]
    pub default_template: String,
}

#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Launch")]
pub struct LaunchArgs {
    /// ttlSecondsAfterFinished for Jobs whose template sets none.
    #[arg(long, env = "JOB_LAUNCHER_DEFAULT_TTL_SECONDS", default_value_t = 3600)]
    pub default_ttl_seconds: i64,

    /// How long one launch may take, retries of transient API errors included.
    #[arg(long, env = "JOB_LAUNCHER_LAUNCH_TIMEOUT", default_value = "10s", value_parser = parse_nonzero_duration)]
    pub launch_timeout: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AuthMode {
    TokenFile,
    Kubernetes,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SqsMode {
    /// One Job per message; the message is deleted once its Job exists.
    Dispatch,
    /// Jobs for the visible messages; the Jobs consume the messages themselves.
    Scale,
}

#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "SQS")]
pub struct SqsArgs {
    /// The queue to consume; enables the SQS consumer.
    #[arg(long, env = "JOB_LAUNCHER_SQS_QUEUE_URL")]
    pub sqs_queue_url: Option<String>,

    /// How messages become Jobs.
    #[arg(long, env = "JOB_LAUNCHER_SQS_MODE", value_enum, default_value = "dispatch")]
    pub sqs_mode: SqsMode,

    /// Template for messages that are not LaunchRequests (default: --default-template).
    #[arg(long, env = "JOB_LAUNCHER_SQS_TEMPLATE")]
    pub sqs_template: Option<String>,

    /// Receive loops running at once (dispatch mode).
    #[arg(long, env = "JOB_LAUNCHER_SQS_CONCURRENCY", default_value_t = 2)]
    pub sqs_concurrency: usize,

    /// Where messages that can never launch go, when the queue has no redrive policy.
    #[arg(long, env = "JOB_LAUNCHER_SQS_DEAD_LETTER_QUEUE_URL")]
    pub sqs_dead_letter_queue_url: Option<String>,

    /// With --sqs-dead-letter-queue-url: a message received this often without launching is
    /// dead-lettered.
    #[arg(long, env = "JOB_LAUNCHER_SQS_MAX_RECEIVES", default_value_t = 5)]
    pub sqs_max_receives: u32,

    /// SQS endpoint, for a local or compatible server (else AWS_ENDPOINT_URL, else AWS's).
    #[arg(long, env = "JOB_LAUNCHER_SQS_ENDPOINT")]
    pub sqs_endpoint: Option<String>,

    /// AWS region (else the AWS default chain: AWS_REGION, profile, instance metadata).
    #[arg(long, env = "JOB_LAUNCHER_SQS_REGION")]
    pub sqs_region: Option<String>,

    /// Static access key id; only when set (else the AWS default chain finds credentials).
    #[arg(long, env = "JOB_LAUNCHER_SQS_ACCESS_KEY_ID", requires = "sqs_secret_access_key")]
    pub sqs_access_key_id: Option<String>,

    /// Static secret access key, with --sqs-access-key-id.
    #[arg(long, env = "JOB_LAUNCHER_SQS_SECRET_ACCESS_KEY", requires = "sqs_access_key_id", hide_env_values = true)]
    pub sqs_secret_access_key: Option<String>,

    /// Visibility timeout asked for on receive; a message taking longer is extended.
    #[arg(long, env = "JOB_LAUNCHER_SQS_VISIBILITY_TIMEOUT", default_value = "30s", value_parser = parse_nonzero_duration)]
    pub sqs_visibility_timeout: Duration,

    /// Long-poll wait per receive (at most 20s; 0: short polls).
    #[arg(long, env = "JOB_LAUNCHER_SQS_WAIT_TIME", default_value = "20s", value_parser = parse_duration)]
    pub sqs_wait_time: Duration,

    /// Scale mode: how often the queue's depth is read.
    #[arg(long, env = "JOB_LAUNCHER_SQS_POLL_INTERVAL", default_value = "1s", value_parser = parse_nonzero_duration)]
    pub sqs_poll_interval: Duration,

    /// Scale mode: most Jobs launched per poll.
    #[arg(long, env = "JOB_LAUNCHER_SQS_MAX_JOBS_PER_POLL", default_value_t = 10)]
    pub sqs_max_jobs_per_poll: u32,

    /// Scale mode: a Job whose pod started less than this long ago is assumed not to have taken
    /// its message yet.
    #[arg(long, env = "JOB_LAUNCHER_SQS_START_GRACE", default_value = "5s", value_parser = parse_duration)]
    pub sqs_start_grace: Duration,
}

/// Every flag of `serve` (and the global ones) with its environment variable, default and help,
/// as markdown tables by section: `docs/configuration.md`.
pub fn reference_markdown() -> String {
    let global = LogArgs::augment_args(clap::Command::new("kube-job-launcher"));
    let serve = ServeArgs::augment_args(clap::Command::new("serve"));
    let mut sections: Vec<(String, Vec<String>)> = Vec::new();
    let mut add = |heading: &str, arg: &clap::Arg| {
        let Some(long) = arg.get_long() else { return };
        if long == "help" || long == "version" {
            return;
        }
        let env = arg.get_env().map(|e| format!("`{}`", e.to_string_lossy())).unwrap_or_default();
        let defaults: Vec<String> = arg.get_default_values().iter().map(|d| d.to_string_lossy().into_owned()).collect();
        let default = if defaults.is_empty() { String::new() } else { format!("`{}`", defaults.join(",")) };
        let values: Vec<String> = arg.get_possible_values().iter().map(|v| v.get_name().to_string()).collect();
        let mut help =
            arg.get_long_help().or(arg.get_help()).map(|h| h.to_string()).unwrap_or_default().replace('\n', " ");
        if !help.is_empty() && !help.ends_with('.') {
            help.push('.');
        }
        if !values.is_empty() {
            help.push_str(&format!(" One of: {}.", values.join(", ")));
        }
        let row = format!("| `--{long}` | {env} | {default} | {} |", help.replace('|', "\\|"));
        match sections.iter_mut().find(|(h, _)| h == heading) {
            Some((_, rows)) => rows.push(row),
            None => sections.push((heading.to_string(), vec![row])),
        }
    };
    for arg in global.get_arguments() {
        add("Logging (every command)", arg);
    }
    for arg in serve.get_arguments() {
        add(arg.get_help_heading().unwrap_or("General"), arg);
    }
    let mut out = String::from(
        "# Configuration reference\n\nEvery flag of `kube-job-launcher serve`, with the environment variable that can set it instead.\nGenerated from the code: `make docs` rewrites this file, and a test fails when it is out of date.\n",
    );
    for (heading, rows) in sections {
        out.push_str(&format!("\n## {heading}\n\n| flag | environment | default | meaning |\n|---|---|---|---|\n"));
        for row in rows {
            out.push_str(&row);
            out.push('\n');
        }
    }
    out
}

/// A duration such as `250ms`, `10s`, `1m30s` or `2h` (humantime's syntax); a bare number is
/// seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if let Ok(seconds) = text.parse::<u64>() {
        return Ok(Duration::from_secs(seconds));
    }
    humantime::parse_duration(text).map_err(|e| format!("{text:?} is not a duration like 500ms, 10s or 1m30s: {e}"))
}

/// A duration that must not be zero: where zero would spin a loop or divide by nothing.
pub fn parse_nonzero_duration(text: &str) -> Result<Duration, String> {
    match parse_duration(text)? {
        Duration::ZERO => Err(format!("{text:?}: must be more than zero")),
        d => Ok(d),
    }
}

/// A lease duration: whole seconds (the Lease records seconds), at least 3 s so that renews fit.
pub fn parse_lease_duration(text: &str) -> Result<Duration, String> {
    let d = parse_duration(text)?;
    if d < Duration::from_secs(3) || d.subsec_nanos() != 0 {
        return Err(format!("{text:?}: a whole number of seconds, at least 3s"));
    }
    Ok(d)
}

/// An instance name: a Kubernetes label value that is not empty.
pub fn parse_instance(text: &str) -> Result<String, String> {
    let ok = !text.is_empty()
        && text.len() <= 63
        && text.starts_with(|c: char| c.is_ascii_alphanumeric())
        && text.ends_with(|c: char| c.is_ascii_alphanumeric())
        && text.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(text.to_string())
    } else {
        Err(format!("{text:?}: 1-63 characters of [A-Za-z0-9._-], alphanumeric at both ends"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units_and_compound_forms() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("10"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert!(parse_duration("10 parsecs").is_err());
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("-1s").is_err());
        assert_eq!(parse_nonzero_duration("0s").map_err(|e| e.contains("more than zero")), Err(true));
        assert_eq!(parse_nonzero_duration("1s"), Ok(Duration::from_secs(1)));
    }

    #[test]
    fn instances_are_label_values() {
        assert!(parse_instance("team-a").is_ok());
        for bad in ["", "-a", "a/b", &"x".repeat(64)] {
            assert!(parse_instance(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_committed_configuration_reference_matches_the_flags() {
        let committed = include_str!("../docs/configuration.md");
        assert!(
            committed == reference_markdown(),
            "docs/configuration.md is out of date: run `make docs` and commit the result"
        );
    }

    #[test]
    fn serve_flags_parse_with_their_defaults() {
        let args = ServeArgs::try_parse_flags(["--template-configmap", "a,b"]).expect("parse");
        assert_eq!(args.templates.config_maps, vec!["a", "b"]);
        assert_eq!(args.http.listen.port(), 8080);
        assert_eq!(args.launch.launch_timeout, Duration::from_secs(10));
        assert!(args.http.ui, "the dashboard is on by default");
        assert!(!ServeArgs::try_parse_flags(["--ui=false"]).expect("parse").http.ui);
        assert!(ServeArgs::try_parse_flags(["--ui"]).expect("parse").http.ui);
    }
}
