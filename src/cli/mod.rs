//! The command-line client, in the launcher's own binary: `launch`, `get`, `list`, `cancel`,
//! `logs`, `templates` and `render` speak the HTTP API; `render --file` renders a template file
//! offline; `config` reads and switches the contexts of the CLI's config file.
//!
//! The connection (`--server`, `--token`, `--token-file`, `--ca-file`,
//! `--insecure-skip-tls-verify`, `--context`, `--config`) and output (`-o`, `--no-headers`)
//! flags are global: before or after the command. Each flag wins over its environment variable,
//! which wins over the config file's context ([`config_file`]).
//!
//! Exit codes: 0 success; 1 the Job failed (`launch --wait`) or a template does not render
//! (`render`); 2 a usage, config, connection or HTTP error.

pub mod args;
pub mod client;
pub mod config_file;
mod contexts;
pub mod error;
mod jobs;
pub mod output;
pub mod render;
mod session;
pub mod sse;
mod templates;

use std::process::ExitCode;

pub use args::{ClientCommand, GlobalArgs};
pub use error::{CliError, EXIT_ERROR, EXIT_FAILED};

pub use session::Session;

/// Runs one CLI command; errors go to standard error as `error: ...`.
pub async fn run(command: ClientCommand, globals: GlobalArgs) -> ExitCode {
    let session = Session::new(globals);
    let result = match command {
        ClientCommand::Launch(c) => jobs::launch(c, &session).await,
        ClientCommand::Get(c) => jobs::get(c, &session).await,
        ClientCommand::Watch(c) => jobs::watch(c, &session).await,
        ClientCommand::List(c) => jobs::list(c, &session).await,
        ClientCommand::Cancel(c) => jobs::cancel(c, &session).await,
        ClientCommand::Logs(c) => jobs::logs(c, &session).await,
        ClientCommand::Templates(c) => templates::templates(c, &session).await,
        ClientCommand::Render(c) => templates::render(c, &session).await,
        ClientCommand::Config(c) => contexts::config(c, &session),
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
        #[command(flatten)]
        globals: GlobalArgs,
    }

    fn parse_all(args: &[&str]) -> Result<Client, clap::Error> {
        let mut argv = vec!["kube-job-launcher"];
        argv.extend_from_slice(args);
        Client::try_parse_from(argv)
    }

    fn parse(args: &[&str]) -> Result<ClientCommand, clap::Error> {
        Ok(parse_all(args)?.command)
    }

    #[test]
    fn global_flags_work_before_and_after_the_command() {
        for argv in [
            &["--server", "http://h:1", "-o", "name", "--no-headers", "list", "--state", "running"][..],
            &["list", "--server", "http://h:1", "--state", "running", "-o", "name", "--no-headers"][..],
            &["-o", "name", "list", "--no-headers", "--state", "running", "--server=http://h:1"][..],
        ] {
            let client = parse_all(argv).unwrap_or_else(|e| panic!("{argv:?}: {e}"));
            assert_eq!(client.globals.server.server.as_deref(), Some("http://h:1"), "{argv:?}");
            assert_eq!(client.globals.output.format(), args::OutputFormat::Name, "{argv:?}");
            assert!(client.globals.output.no_headers, "{argv:?}");
            assert!(matches!(client.command, ClientCommand::List(l) if l.state.as_deref() == Some("running")));
        }
        let client =
            parse_all(&["--context", "prod", "templates", "--ca-file", "ca.pem", "--token-file", "t"]).expect("parses");
        assert_eq!(client.globals.server.context.as_deref(), Some("prod"));
        assert_eq!(client.globals.server.ca_file.as_deref(), Some(std::path::Path::new("ca.pem")));
        let list =
            parse(&["list", "-l", "team!=data", "--selector", "tier in (a, b)", "--label", "x"]).expect("parses");
        let ClientCommand::List(list) = list else { panic!("list") };
        let texts: Vec<String> = list.selectors.iter().map(ToString::to_string).collect();
        assert_eq!(texts, vec!["team!=data", "tier in (a,b)", "x"]);
        let ClientCommand::Launch(launch) = parse(&["launch", "-l", "team=data"]).expect("parses") else {
            panic!("launch")
        };
        assert_eq!(launch.request.labels, vec![("team".to_string(), "data".to_string())], "launch -l sets labels");
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
        let Client { command: ClientCommand::Launch(launch), globals } = parse_all(&[
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
        assert_eq!(globals.server.server.as_deref(), Some("http://h:1"));
        assert_eq!(globals.output.format(), args::OutputFormat::Json);
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
        assert!(parse(&["get", "x", "--ca-file", "ca.pem", "--insecure-skip-tls-verify"]).is_err());
        assert!(parse(&["list", "-l", "a in b"]).is_err_and(|e| e.to_string().contains("want '(' after 'in'")));
        assert!(parse(&["list", "-o", "tabel"]).is_err());
        assert!(
            matches!(parse(&["logs", "x", "-f", "--tail", "3"]), Ok(ClientCommand::Logs(l)) if l.follow && l.tail == Some(3))
        );
    }
}
