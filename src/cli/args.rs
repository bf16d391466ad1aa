//! The CLI's subcommands and flags (clap derive). Every command that talks to a launcher takes
//! `--server`, `--token` or `--token-file`, each with an environment fallback.

use std::{collections::BTreeMap, path::PathBuf, time::Duration};

use clap::{ArgGroup, Args, Subcommand, ValueEnum};

use super::error::CliError;
use crate::{
    api::{LaunchRequest, ParamValue},
    config::parse_duration,
};

/// The commands that speak the launcher's HTTP API (and `render --file`, which needs no server).
#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Launch a Job from a template; with --wait, follow it to its end and exit with its outcome.
    Launch(LaunchCommand),
    /// Show one Job.
    Get(JobCommand),
    /// List Jobs, newest first.
    List(ListCommand),
    /// Cancel a Job: delete it and its pods.
    Cancel(JobCommand),
    /// Print the log of a Job's pod; -f follows it while the pod runs.
    Logs(LogsCommand),
    /// List the templates, or show one.
    Templates(TemplatesCommand),
    /// Render a template into the Job manifest a launch would create; nothing is created.
    ///
    /// `--file` renders a template file offline, with the launcher's own validation and rendering
    /// (for template authors' CI); `--template` asks the server to render a template it serves.
    Render(RenderCommand),
}

/// Where the launcher is and how to authenticate to it.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Server")]
pub struct ServerArgs {
    /// The launcher's API, e.g. http://127.0.0.1:8080 (https needs the system's trust store to
    /// know the server's certificate authority).
    #[arg(long, env = "JOB_LAUNCHER_SERVER", default_value = "http://127.0.0.1:8080")]
    pub server: String,

    /// Bearer token for the API.
    #[arg(long, env = "JOB_LAUNCHER_TOKEN", hide_env_values = true, conflicts_with = "token_file")]
    pub token: Option<String>,

    /// File holding the bearer token (surrounding whitespace is ignored).
    #[arg(long, env = "JOB_LAUNCHER_TOKEN_FILE", value_name = "PATH")]
    pub token_file: Option<PathBuf>,
}

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// Aligned columns for people.
    Table,
    Json,
    Yaml,
}

#[derive(Debug, Clone, Copy, Args)]
pub struct OutputArgs {
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value = "table")]
    pub format: OutputFormat,
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
            notify: None,
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
    pub output: OutputArgs,

    #[command(flatten)]
    pub request: RequestArgs,

    #[command(flatten)]
    pub server: ServerArgs,
}

/// A command about one Job: `get` and `cancel`.
#[derive(Debug, Args)]
pub struct JobCommand {
    /// The Job's name.
    pub name: String,

    #[command(flatten)]
    pub output: OutputArgs,

    #[command(flatten)]
    pub server: ServerArgs,
}

#[derive(Debug, Args)]
pub struct ListCommand {
    /// Only Jobs of this template.
    #[arg(short = 't', long)]
    pub template: Option<String>,

    /// Only Jobs in this state.
    #[arg(long, value_parser = ["queued", "pending", "running", "succeeded", "failed"])]
    pub state: Option<String>,

    /// Only Jobs with this label (repeatable; all must match).
    #[arg(short = 'l', long = "label", value_name = "KEY=VALUE", value_parser = parse_pair)]
    pub labels: Vec<(String, String)>,

    /// Jobs per page (the server's default is 100, its maximum 1000).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub limit: Option<u32>,

    /// Every page, not only the first.
    #[arg(long)]
    pub all: bool,

    /// Start at this page: the `continue` token of the previous one.
    #[arg(long = "continue", value_name = "TOKEN", conflicts_with = "all")]
    pub continue_token: Option<String>,

    #[command(flatten)]
    pub output: OutputArgs,

    #[command(flatten)]
    pub server: ServerArgs,
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

    #[command(flatten)]
    pub server: ServerArgs,
}

#[derive(Debug, Args)]
pub struct TemplatesCommand {
    /// Show this template in detail.
    pub name: Option<String>,

    #[command(flatten)]
    pub output: OutputArgs,

    #[command(flatten)]
    pub server: ServerArgs,
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
    pub output: OutputArgs,

    #[command(flatten)]
    pub request: RequestArgs,

    #[command(flatten)]
    pub server: ServerArgs,
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
        };
        assert!(matches!(args.to_request(None), Err(CliError::Usage(m)) if m.contains("--env A")));
    }
}
