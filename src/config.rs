//! Command-line flags, each with an environment fallback under the prefix `JOB_LAUNCHER_`.

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "kube-job-launcher", version, about = "Turns HTTP requests and SQS messages into Kubernetes Jobs")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,

    #[command(flatten)]
    pub log: LogArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the launcher service.
    Serve(ServeArgs),
}

#[derive(Debug, Clone, Args)]
pub struct LogArgs {
    /// Log filter, in tracing's EnvFilter syntax (e.g. `info,kube=warn`).
    #[arg(long, env = "JOB_LAUNCHER_LOG", default_value = "info", global = true)]
    pub log_filter: String,

    /// Log format.
    #[arg(long, env = "JOB_LAUNCHER_LOG_FORMAT", value_enum, default_value = "plain", global = true)]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Plain,
    Json,
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub kube: KubeArgs,
}

#[derive(Debug, Clone, Args)]
pub struct KubeArgs {
    /// Namespace the launcher works in: its templates, and the Jobs it creates. Defaults to the
    /// namespace of the in-cluster service account, else the kubeconfig context's namespace.
    #[arg(long, env = "JOB_LAUNCHER_NAMESPACE")]
    pub namespace: Option<String>,
}
