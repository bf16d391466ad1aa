//! The command-line client, in the launcher's own binary: `launch`, `get`, `list`, `cancel`,
//! `logs`, `templates` and `render` speak the HTTP API (`--server`, `--token`); `render --file`
//! renders a template file offline.
//!
//! Exit codes: 0 success; 1 the Job failed (`launch --wait`) or a template does not render
//! (`render`); 2 a usage, connection or HTTP error.

pub mod args;
pub mod client;
pub mod error;
mod jobs;
pub mod output;
pub mod render;
mod templates;

use std::process::ExitCode;

pub use args::ClientCommand;
pub use error::{CliError, EXIT_ERROR, EXIT_FAILED};

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
    use std::time::Duration;

    use clap::Parser;

    use super::*;

    /// The client's commands on their own, as the binary mounts them.
    #[derive(Debug, Parser)]
    struct Client {
        #[command(subcommand)]
        command: ClientCommand,
    }

    fn parse(args: &[&str]) -> Result<ClientCommand, clap::Error> {
        let mut argv = vec!["kube-job-launcher"];
        argv.extend_from_slice(args);
        Ok(Client::try_parse_from(argv)?.command)
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
