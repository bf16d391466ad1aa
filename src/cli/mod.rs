//! The command-line client, in the launcher's own binary: `launch`, `get`, `list`, `cancel`,
//! `logs`, `templates` and `render` speak the HTTP API (`--server`, `--token`); `render --file`
//! renders a template file offline.
//!
//! Exit codes: 0 success; 1 the Job failed (`launch --wait`) or a template does not render
//! (`render`); 2 a usage, connection or HTTP error.

pub mod args;
pub mod client;
mod jobs;
pub mod output;
pub mod render;
mod templates;

use std::{process::ExitCode, time::Duration};

pub use args::ClientCommand;

/// Exit code of a failed Job or a template that does not render.
pub const EXIT_FAILED: u8 = 1;
/// Exit code of usage, connection and HTTP errors.
pub const EXIT_ERROR: u8 = 2;

/// Why a command did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0}")]
    Usage(String),

    #[error(
        "cannot connect to the launcher at {server}: {cause}\n  is it running, and does --server (or JOB_LAUNCHER_SERVER) name its API?"
    )]
    Connect { server: String, cause: String },

    #[error("no answer from the launcher at {server} in time")]
    Timeout { server: String },

    #[error("talking to the launcher at {server}: {cause}")]
    Transport { server: String, cause: String },

    /// A problem+json answer.
    #[error("{title} ({status}): {detail}{}", hint.as_ref().map(|h| format!("\n  hint: {h}")).unwrap_or_default())]
    Problem { status: u16, title: String, detail: String, hint: Option<String> },

    /// An error answer that is not problem+json (a proxy's, say).
    #[error("the launcher at {server} answered {status} {reason}: {body}")]
    Status { server: String, status: u16, reason: String, body: String },

    #[error("{0}")]
    Unexpected(String),

    /// `--wait` ran out of time: the Job's outcome is not known.
    #[error("{0}")]
    GaveUp(String),

    /// The Job failed, or a template does not render: exit 1.
    #[error("{0}")]
    Failed(String),

    /// Standard output was closed (`| head`): stop quietly.
    #[error("standard output closed")]
    BrokenPipe,
}

impl CliError {
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Failed(_) => EXIT_FAILED,
            Self::BrokenPipe => 0,
            _ => EXIT_ERROR,
        }
    }

    /// Worth retrying while following a Job: the server or the network may come back.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Connect { .. } | Self::Timeout { .. } | Self::Transport { .. } => true,
            Self::Problem { status, .. } | Self::Status { status, .. } => {
                matches!(status, 408 | 429 | 502 | 503 | 504)
            }
            _ => false,
        }
    }

    /// The HTTP status of an error answer.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Problem { status, .. } | Self::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// How often `launch --wait` and `logs -f` look again.
const POLL_INTERVAL: Duration = Duration::from_millis(500);

/// Runs one CLI command; errors go to standard error as `error: ...`.
pub async fn run(command: ClientCommand) -> ExitCode {
    let result = match command {
        ClientCommand::Launch(c) => jobs::launch(c).await,
        ClientCommand::Get(c) => jobs::get(c).await,
        ClientCommand::List(c) => jobs::list(c).await,
        ClientCommand::Cancel(c) => jobs::cancel(c).await,
        ClientCommand::Logs(c) => jobs::logs(c).await,
        ClientCommand::Templates(c) => templates::templates(c).await,
        ClientCommand::Render(c) => templates::render(c).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(CliError::BrokenPipe) => ExitCode::SUCCESS,
        Err(error) => {
            output::stderr(&format!("error: {error}"));
            ExitCode::from(error.exit_code())
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::config::{Cli, Command};

    fn parse(args: &[&str]) -> Result<ClientCommand, clap::Error> {
        let mut argv = vec!["kube-job-launcher"];
        argv.extend_from_slice(args);
        match Cli::try_parse_from(argv)?.command {
            Command::Client(c) => Ok(*c),
            other => panic!("not a CLI command: {other:?}"),
        }
    }

    #[test]
    fn problems_read_as_title_status_and_detail() {
        let e = CliError::Problem {
            status: 404,
            title: "Unknown template".into(),
            detail: "no template".into(),
            hint: None,
        };
        assert_eq!(e.to_string(), "Unknown template (404): no template");
        assert_eq!(e.exit_code(), EXIT_ERROR);
        assert!(!e.is_transient());
        let e = CliError::Problem { status: 503, title: "t".into(), detail: "d".into(), hint: Some("h".into()) };
        assert_eq!(e.to_string(), "t (503): d\n  hint: h");
        assert!(e.is_transient());
        assert_eq!(CliError::Failed("x".into()).exit_code(), EXIT_FAILED);
    }

    #[test]
    fn the_commands_parse_with_their_flags() {
        let ClientCommand::Launch(launch) = parse(&[
            "launch",
            "-t",
            "fake",
            "--param",
            "exitCode:=3",
            "-e",
            "A=1",
            "--label",
            "team=x",
            "--priority",
            "-2",
            "--wait",
            "--timeout",
            "90s",
            "--server",
            "http://h:1",
            "-o",
            "json",
        ])
        .expect("launch parses") else {
            panic!("launch")
        };
        assert_eq!(launch.template.as_deref(), Some("fake"));
        assert_eq!(launch.request.priority, -2);
        assert_eq!(launch.timeout, Some(Duration::from_secs(90)));
        assert_eq!(launch.server.server, "http://h:1");
        assert_eq!(launch.output.format, args::OutputFormat::Json);
        let request = launch.request.to_request(launch.template.clone()).expect("request");
        assert_eq!(
            serde_json::to_value(&request).ok().and_then(|v| v.pointer("/params/exitCode").cloned()),
            Some(3.into())
        );

        assert!(parse(&["launch", "--timeout", "5s"]).is_err(), "--timeout needs --wait");
        assert!(parse(&["render"]).is_err(), "render needs --file or --template");
        assert!(parse(&["render", "--file", "a.yaml", "--template", "t"]).is_err(), "not both");
        assert!(parse(&["render", "--template", "t", "--namespace", "x"]).is_err(), "--namespace is for --file");
        assert!(parse(&["render", "--template", "t", "--name", "x"]).is_err(), "--name is for --file");
        assert!(parse(&["render", "--template", "t"]).is_ok());
        assert!(parse(&["list", "--state", "done"]).is_err());
        assert!(parse(&["list", "--all", "--continue", "t"]).is_err());
        assert!(parse(&["get", "x", "--token", "a", "--token-file", "f"]).is_err());
        assert!(
            matches!(parse(&["logs", "x", "-f", "--tail", "3"]), Ok(ClientCommand::Logs(l)) if l.follow && l.tail == Some(3))
        );
    }
}
