//! The CLI's subcommands and flags (clap derive). The connection and output flags
//! ([`GlobalArgs`]) are global: they may come before or after the subcommand, as kubectl's do.
//! Their environment variables and the config file's contexts are applied later, in
//! [`super::config_file`], so that a flag always wins over the environment, and the environment
//! over the config file.

use std::{collections::BTreeMap, path::PathBuf, time::Duration};

use clap::{ArgGroup, Args, Subcommand, ValueEnum};

use super::error::CliError;
use crate::{
    api::{LaunchRequest, NotifyTargets, ParamValue},
    config::parse_duration,
    selector::{self, Selector},
};

/// The commands that speak the launcher's HTTP API (and `render --file`, which needs no server,
/// and `config`, which reads the config file).
#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Launch a Job from a template; with --wait, follow it to its end and exit with its outcome.
    #[command(after_help = LAUNCH_EXAMPLES)]
    Launch(LaunchCommand),
    /// Show one Job.
    #[command(after_help = GET_EXAMPLES)]
    Get(JobCommand),
    /// List Jobs, newest first.
    #[command(after_help = LIST_EXAMPLES)]
    List(ListCommand),
    /// Follow a Job's changes as they happen until it ends, and exit with its outcome (0
    /// succeeded, 1 failed or cancelled).
    #[command(after_help = WATCH_EXAMPLES)]
    Watch(WatchCommand),
    /// Cancel a Job: delete it and its pods.
    #[command(after_help = CANCEL_EXAMPLES)]
    Cancel(JobCommand),
    /// Print the log of a Job's pod; -f follows it while the pod runs.
    #[command(after_help = LOGS_EXAMPLES)]
    Logs(LogsCommand),
    /// List the templates, or show one.
    #[command(after_help = TEMPLATES_EXAMPLES)]
    Templates(TemplatesCommand),
    /// Render a template into the Job manifest a launch would create; nothing is created.
    ///
    /// `--file` renders a template file offline, with the launcher's own validation and rendering
    /// (for template authors' CI); `--template` asks the server to render a template it serves.
    /// Exit codes: 0 rendered; 1 the template is invalid or the request does not fit it; 2 usage,
    /// file, connection or HTTP errors.
    #[command(after_help = RENDER_EXAMPLES)]
    Render(RenderCommand),
    /// Show or switch the contexts of the CLI's config file.
    #[command(subcommand, after_help = CONFIG_EXAMPLES)]
    Config(ConfigCommand),
}

pub const LAUNCH_EXAMPLES: &str = "\
Examples:
  # Launch the default template; prints the Job's name
  kube-job-launcher launch

  # A template with parameters (name:=JSON sends a number or a boolean), an env variable and a label
  kube-job-launcher launch -t greeting -p name=Ada -p times:=3 -e GREETING_STYLE=loud -l team=data

  # Launch once per key, wait for the Job and exit with its outcome (0 succeeded, 1 failed)
  kube-job-launcher launch -t nightly --idempotency-key nightly-2026-11-02 --wait --timeout 30m

  # Against a remote launcher, the JobView as JSON
  kube-job-launcher --context prod launch -t greeting -p name=Ada -o json";

pub const GET_EXAMPLES: &str = "\
Examples:
  # A Job in detail: state, times, pods, exit codes
  kube-job-launcher get greeting-k3l2m9x0qa

  # Its JobView as JSON, e.g. for jq
  kube-job-launcher get greeting-k3l2m9x0qa -o json | jq -r .result";

pub const LIST_EXAMPLES: &str = "\
Examples:
  # The newest 100 Jobs
  kube-job-launcher list

  # Running Jobs of one template, with more columns
  kube-job-launcher list -t greeting --state running -o wide

  # A label selector, as kubectl's -l
  kube-job-launcher list -l 'team in (data,ml),tier!=batch'
  kube-job-launcher list -l '!experiment'

  # Names only, one per line: cancel every failed Job
  kube-job-launcher list --state failed -o name | xargs -n1 kube-job-launcher cancel

  # Every page as one JSON list
  kube-job-launcher list --limit 500 --all -o json";

pub const CANCEL_EXAMPLES: &str = "\
Examples:
  # Delete a Job and its pods (a queued Job leaves the queue)
  kube-job-launcher cancel greeting-k3l2m9x0qa";

pub const LOGS_EXAMPLES: &str = "\
Examples:
  # The newest pod's log
  kube-job-launcher logs greeting-k3l2m9x0qa

  # Follow it while the pod runs (waiting for a pod, if there is none yet)
  kube-job-launcher logs greeting-k3l2m9x0qa -f

  # The last 20 lines of one container
  kube-job-launcher logs greeting-k3l2m9x0qa --tail 20 -c sidecar";

pub const TEMPLATES_EXAMPLES: &str = "\
Examples:
  # Every template, valid or not, with its parameters (name* is required, name=value has a default)
  kube-job-launcher templates

  # One template in detail
  kube-job-launcher templates greeting

  # Template names only
  kube-job-launcher templates -o name";

pub const RENDER_EXAMPLES: &str = "\
Examples:
  # Offline, for template CI: validate and render a template file (no server needed)
  kube-job-launcher render --file examples/greeting.yaml -p name=Ada -p times:=2

  # A template as a ConfigMap holds it, from standard input
  kubectl get cm job-template-cm -o jsonpath='{.data.greeting\\.yaml}' | kube-job-launcher render -f - --name greeting -p name=Ada

  # As the server would create it, as JSON
  kube-job-launcher render --template greeting -p name=Ada -o json

Exit codes: 0 rendered; 1 the template is invalid or the request does not fit it; 2 usage, file,
connection or HTTP errors.";

pub const CONFIG_EXAMPLES: &str = "\
Examples:
  # The contexts, the current one marked with *
  kube-job-launcher config get-contexts

  # Make prod the current context
  kube-job-launcher config use-context prod

  # The config file, tokens redacted
  kube-job-launcher config view

The file ($XDG_CONFIG_HOME/kube-job-launcher/config, else ~/.config/kube-job-launcher/config, or
--config, or JOB_LAUNCHER_CONFIG):

  current-context: prod
  contexts:
    - name: prod
      server: https://launcher.example.com
      token-file: prod.token          # relative to the file's folder; or token: ...
      ca-file: /etc/ssl/certs/launcher-ca.pem
    - name: local
      server: http://127.0.0.1:8080";

/// The flags every CLI command takes, before or after the command's name.
#[derive(Debug, Clone, Default, Args)]
pub struct GlobalArgs {
    #[command(flatten)]
    pub server: ServerArgs,

    #[command(flatten)]
    pub output: OutputArgs,
}

/// Where the launcher is and how to authenticate to it. Each flag wins over its environment
/// variable, which wins over the config file's context.
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "Connection (CLI commands)")]
pub struct ServerArgs {
    /// The launcher's API, e.g. https://launcher.example.com; a bare host:port means http://
    /// [env: JOB_LAUNCHER_SERVER] [default: the context's server, else http://127.0.0.1:8080]
    #[arg(long, global = true, value_name = "URL")]
    pub server: Option<String>,

    /// Bearer token for the API [env: JOB_LAUNCHER_TOKEN]
    #[arg(long, global = true, value_name = "TOKEN", conflicts_with = "token_file")]
    pub token: Option<String>,

    /// File holding the bearer token; surrounding whitespace is ignored [env: JOB_LAUNCHER_TOKEN_FILE]
    #[arg(long, global = true, value_name = "PATH")]
    pub token_file: Option<PathBuf>,

    /// PEM file of the certificate authority that signed an https server's certificate, trusted
    /// instead of the system's store [env: JOB_LAUNCHER_CA_FILE]
    #[arg(long, global = true, value_name = "PATH", conflicts_with = "insecure_skip_tls_verify")]
    pub ca_file: Option<PathBuf>,

    /// Do not check an https server's certificate: whoever is in between can read the token
    #[arg(long, global = true)]
    pub insecure_skip_tls_verify: bool,

    /// The config file's context to use [env: JOB_LAUNCHER_CONTEXT] [default: its current-context]
    #[arg(long, global = true, value_name = "NAME")]
    pub context: Option<String>,

    /// The config file [env: JOB_LAUNCHER_CONFIG] [default:
    /// $XDG_CONFIG_HOME/kube-job-launcher/config, else ~/.config/kube-job-launcher/config]
    #[arg(long = "config", global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
}

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// Aligned columns for people (`get` and `templates NAME`: a description).
    Table,
    /// The table with more columns.
    Wide,
    /// Names only, one per line.
    Name,
    /// The API's answer as JSON.
    Json,
    /// The API's answer as YAML.
    Yaml,
}

#[derive(Debug, Clone, Copy, Default, Args)]
#[command(next_help_heading = "Output (CLI commands)")]
pub struct OutputArgs {
    /// Output format [default: table]
    #[arg(short = 'o', long = "output", global = true, value_enum, value_name = "FORMAT")]
    pub format: Option<OutputFormat>,

    /// Tables without their header row.
    #[arg(long, global = true)]
    pub no_headers: bool,
}

impl OutputFormat {
    /// JSON or YAML: the API's answer as it is, for programs.
    pub fn is_document(self) -> bool {
        matches!(self, Self::Json | Self::Yaml)
    }

    /// A table (or a description) for people.
    pub fn is_table(self) -> bool {
        matches!(self, Self::Table | Self::Wide)
    }
}

impl OutputArgs {
    /// The format asked for, else a table.
    pub fn format(&self) -> OutputFormat {
        self.format.unwrap_or(OutputFormat::Table)
    }
}

/// What a launch (or a render) asks for, besides the template.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Request")]
pub struct RequestArgs {
    /// An environment variable for the Job's container (repeatable).
    #[arg(short = 'e', long = "env", value_name = "NAME=VALUE", value_parser = parse_pair)]
    pub env: Vec<(String, String)>,

    /// A template parameter (repeatable). `name=value` sends a string; `name:=JSON` sends a JSON
    /// number or boolean (`--param count:=3`, `--param dry:=true`).
    #[arg(short = 'p', long = "param", value_name = "NAME=VALUE|NAME:=JSON", value_parser = parse_param)]
    pub params: Vec<(String, ParamValue)>,

    /// A label for the Job and its pods (repeatable).
    #[arg(short = 'l', long = "label", value_name = "KEY=VALUE", value_parser = parse_pair)]
    pub labels: Vec<(String, String)>,

    /// Priority in the admission queue: higher is admitted first.
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    pub priority: i32,

    /// Makes the launch idempotent: the same key and request always name the same Job, and a
    /// repeated launch finds it instead of creating another.
    #[arg(long, value_name = "KEY")]
    pub idempotency_key: Option<String>,

    /// A webhook that gets the Job's final view, signed, when it ends (the server's
    /// `--notify-url-allow` must admit it).
    #[arg(long, value_name = "URL")]
    pub notify_url: Option<String>,

    /// An SQS queue that gets the Job's final view when it ends (the server's
    /// `--notify-sqs-allow` must admit it).
    #[arg(long, value_name = "URL")]
    pub notify_sqs_queue_url: Option<String>,
}

impl RequestArgs {
    /// The LaunchRequest these flags describe. A key given twice is a usage error.
    pub fn to_request(&self, template: Option<String>) -> Result<LaunchRequest, CliError> {
        Ok(LaunchRequest {
            template,
            env: unique("--env", self.env.iter().cloned())?,
            params: unique("--param", self.params.iter().cloned())?,
            labels: unique("--label", self.labels.iter().cloned())?,
            priority: self.priority,
            idempotency_key: self.idempotency_key.clone(),
            notify: (self.notify_url.is_some() || self.notify_sqs_queue_url.is_some()).then(|| NotifyTargets {
                url: self.notify_url.clone(),
                sqs_queue_url: self.notify_sqs_queue_url.clone(),
            }),
        })
    }
}

fn unique<V>(flag: &str, pairs: impl Iterator<Item = (String, V)>) -> Result<BTreeMap<String, V>, CliError> {
    let mut map = BTreeMap::new();
    for (k, v) in pairs {
        if map.insert(k.clone(), v).is_some() {
            return Err(CliError::Usage(format!("{flag} {k} is given twice")));
        }
    }
    Ok(map)
}

#[derive(Debug, Args)]
pub struct LaunchCommand {
    /// The template to launch (default: the launcher's default template).
    #[arg(short = 't', long)]
    pub template: Option<String>,

    /// Follow the Job to its end, printing a line on each change of state; exit 0 when it
    /// succeeds, 1 when it fails.
    #[arg(short = 'w', long)]
    pub wait: bool,

    /// With --wait: give up after this long (e.g. 90s, 10m), exit 2.
    #[arg(long, value_parser = parse_duration, requires = "wait")]
    pub timeout: Option<Duration>,

    #[command(flatten)]
    pub request: RequestArgs,
}

/// `watch NAME`.
#[derive(Debug, Args)]
pub struct WatchCommand {
    /// The Job's name.
    pub name: String,

    /// Give up after this long (e.g. 90s, 10m), exit 2.
    #[arg(long, value_parser = parse_duration)]
    pub timeout: Option<Duration>,
}

const WATCH_EXAMPLES: &str = "Examples:
  kube-job-launcher watch greeting-x7k2p9q4rm
  kube-job-launcher watch k-3fj2... --timeout 10m -o json   # the final JobView as JSON";

/// A command about one Job: `get` and `cancel`.
#[derive(Debug, Args)]
pub struct JobCommand {
    /// The Job's name.
    pub name: String,
}

#[derive(Debug, Args)]
pub struct ListCommand {
    /// Only Jobs of this template.
    #[arg(short = 't', long)]
    pub template: Option<String>,

    /// Only Jobs in this state.
    #[arg(long, value_parser = ["queued", "pending", "running", "succeeded", "failed"])]
    pub state: Option<String>,

    /// Only Jobs whose labels match this selector, as kubectl's: `k=v`, `k==v`, `k!=v`,
    /// `k in (a,b)`, `k notin (a,b)`, `k` (has the label), `!k` (has not), comma-separated; all
    /// must match (repeatable, likewise).
    #[arg(short = 'l', long = "selector", visible_alias = "label", value_name = "SELECTOR", value_parser = parse_selector)]
    pub selectors: Vec<Selector>,

    /// Jobs per page (the server's default is 100, its maximum 1000).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub limit: Option<u32>,

    /// Every page, not only the first.
    #[arg(long)]
    pub all: bool,

    /// Start at this page: the `continue` token of the previous one.
    #[arg(long = "continue", value_name = "TOKEN", conflicts_with = "all")]
    pub continue_token: Option<String>,
}

#[derive(Debug, Args)]
pub struct LogsCommand {
    /// The Job's name.
    pub name: String,

    /// Stream the log while the pod runs (waiting for a pod first, if the Job has none yet).
    #[arg(short = 'f', long)]
    pub follow: bool,

    /// The container, when the pod has several.
    #[arg(short = 'c', long)]
    pub container: Option<String>,

    /// Only the last N lines.
    #[arg(long, value_name = "N")]
    pub tail: Option<u32>,
}

#[derive(Debug, Args)]
pub struct TemplatesCommand {
    /// Show this template in detail.
    pub name: Option<String>,
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("source").required(true).args(["file", "template"])))]
pub struct RenderCommand {
    /// Render this template file offline (`-` reads standard input); no server is needed.
    #[arg(short = 'f', long, value_name = "PATH")]
    pub file: Option<PathBuf>,

    /// Render this template as the server holds it (POST /v1/templates/NAME/render).
    #[arg(short = 't', long)]
    pub template: Option<String>,

    /// With --file: the template's name, as its ConfigMap key would give it (default: the file's
    /// name without its extension).
    #[arg(long, conflicts_with = "template")]
    pub name: Option<String>,

    /// With --file: the namespace the launcher runs in; keyed Job names depend on it.
    #[arg(long, default_value = "default", conflicts_with = "template")]
    pub namespace: String,

    /// With --file: ttlSecondsAfterFinished when the template sets none (the launcher's
    /// --default-ttl-seconds).
    #[arg(long, default_value_t = 3600, conflicts_with = "template")]
    pub default_ttl_seconds: i64,

    /// With --file: the launcher's --instance; keyed Job names depend on it.
    #[arg(long, default_value = "default", conflicts_with = "template")]
    pub instance: String,

    /// With --file: the caller the launcher would see (the token's user; `anonymous` without
    /// auth); keyed Job names depend on it.
    #[arg(long, default_value = "anonymous", conflicts_with = "template")]
    pub caller: String,

    // `table` prints YAML, as `yaml` does.
    #[command(flatten)]
    pub request: RequestArgs,
}

/// A label selector, checked here so that a malformed one is a usage error before any request.
pub fn parse_selector(text: &str) -> Result<Selector, String> {
    selector::parse(text).map_err(|e| e.message)
}

/// `config`: the CLI's config file and its contexts.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the config file, tokens redacted (YAML; -o json for JSON).
    #[command(after_help = "Examples:\n  kube-job-launcher config view\n  kube-job-launcher config view --raw -o json")]
    View {
        /// Show tokens as they are.
        #[arg(long)]
        raw: bool,
    },
    /// List the contexts; the current one is marked with *.
    #[command(
        after_help = "Examples:\n  kube-job-launcher config get-contexts\n  kube-job-launcher config get-contexts -o name"
    )]
    GetContexts,
    /// Print the name of the context in use (--context, JOB_LAUNCHER_CONTEXT or current-context).
    #[command(after_help = "Examples:\n  kube-job-launcher config current-context")]
    CurrentContext,
    /// Make a context the current one: rewrites the file's current-context line, keeping the rest.
    #[command(after_help = "Examples:\n  kube-job-launcher config use-context prod")]
    UseContext {
        /// The context's name.
        name: String,
    },
}

/// `KEY=VALUE`, split at the first `=`; the key must not be empty.
pub fn parse_pair(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("{text:?}: want KEY=VALUE")),
    }
}

/// `name=value` (a string) or `name:=JSON` (a number, a boolean, or a JSON string).
pub fn parse_param(text: &str) -> Result<(String, ParamValue), String> {
    let (key, value) = parse_pair(text).map_err(|_| format!("{text:?}: want NAME=VALUE or NAME:=JSON"))?;
    let Some(key) = key.strip_suffix(':') else { return Ok((key, ParamValue::String(value))) };
    if key.is_empty() {
        return Err(format!("{text:?}: want NAME:=JSON"));
    }
    match serde_json::from_str::<serde_json::Value>(&value) {
        Ok(serde_json::Value::Number(n)) => Ok((key.to_string(), ParamValue::Number(n))),
        Ok(serde_json::Value::Bool(b)) => Ok((key.to_string(), ParamValue::Bool(b))),
        Ok(serde_json::Value::String(s)) => Ok((key.to_string(), ParamValue::String(s))),
        Ok(_) => Err(format!("{text:?}: a parameter is a string, a number or a boolean")),
        Err(e) => Err(format!("{text:?}: after := comes JSON (a number or true/false): {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_split_at_the_first_equals_sign() {
        assert_eq!(parse_pair("a=b=c"), Ok(("a".into(), "b=c".into())));
        assert_eq!(parse_pair("a="), Ok(("a".into(), String::new())));
        assert!(parse_pair("=b").is_err());
        assert!(parse_pair("ab").is_err());
    }

    #[test]
    fn params_are_strings_unless_given_with_colon_equals() {
        assert_eq!(parse_param("n=3"), Ok(("n".into(), ParamValue::String("3".into()))));
        assert_eq!(parse_param("n:=3"), Ok(("n".into(), ParamValue::Number(3.into()))));
        assert_eq!(parse_param("n:=2.5").map(|(_, v)| v.to_string()), Ok("2.5".into()));
        assert_eq!(parse_param("dry:=true"), Ok(("dry".into(), ParamValue::Bool(true))));
        assert_eq!(parse_param("s:=\"x\""), Ok(("s".into(), ParamValue::String("x".into()))));
        assert_eq!(parse_param("q=a:=b"), Ok(("q".into(), ParamValue::String("a:=b".into()))));
        for bad in ["n:=[1]", "n:={}", "n:=null", "n:=yes", ":=1", "n", "=1"] {
            assert!(parse_param(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_key_given_twice_is_refused() {
        let args = RequestArgs {
            env: vec![("A".into(), "1".into()), ("A".into(), "2".into())],
            params: vec![],
            labels: vec![],
            priority: 0,
            idempotency_key: None,
            notify_url: None,
            notify_sqs_queue_url: None,
        };
        assert!(matches!(args.to_request(None), Err(CliError::Usage(m)) if m.contains("--env A")));
    }
}
