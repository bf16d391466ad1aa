//! The binary: the command tree (`serve`, the CLI's commands, and two document generators), and
//! for each command, building the application or running the client.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use kube_job_launcher::{
    app::{Application, kube_clients},
    cli::ClientCommand,
    config::{LogArgs, ServeArgs},
    http, telemetry,
};

#[derive(Debug, Parser)]
#[command(name = "kube-job-launcher", version, about = "Turns HTTP requests and SQS messages into Kubernetes Jobs")]
struct Cli {
    #[command(subcommand)]
    command: Command,

    #[command(flatten)]
    log: LogArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the launcher service.
    Serve(Box<ServeArgs>),
    /// Print the HTTP API's OpenAPI document.
    Openapi,
    /// Print the configuration reference (every flag and environment variable) as markdown.
    #[command(hide = true)]
    ConfigReference,
    // The CLI: launch, get, list, cancel, logs, templates, render (see docs/cli.md).
    #[command(flatten)]
    Client(Box<ClientCommand>),
}

fn main() -> ExitCode {
    kube_job_launcher::memory::limit_arenas();
    match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime.block_on(run(Cli::parse())),
        Err(error) => {
            eprintln!("cannot start the async runtime: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Serve(args) => {
            // Only the server logs; the CLI's output is its answer.
            telemetry::init_logging(&cli.log);
            let started = async {
                let (clients, namespace) = kube_clients(&args.kube).await?;
                Application::build(*args, clients, namespace).await
            };
            match started.await {
                Ok(app) => match app.run_until_stopped(shutdown_signal()).await {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(error) => {
                        tracing::error!(%error, "stopped because a task it needs ended");
                        ExitCode::FAILURE
                    }
                },
                Err(error) => {
                    tracing::error!(%error, "cannot start");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Client(command) => kube_job_launcher::cli::run(*command).await,
        Command::ConfigReference => {
            print!("{}", kube_job_launcher::config::reference_markdown());
            ExitCode::SUCCESS
        }
        Command::Openapi => match serde_json::to_string_pretty(&http::openapi()) {
            Ok(json) => {
                println!("{json}");
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("cannot encode the OpenAPI document: {error}");
                ExitCode::FAILURE
            }
        },
    }
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::warn!(%error, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("SIGINT received"),
        () = terminate => tracing::info!("SIGTERM received"),
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_command_tree_is_consistent_and_routes_serve_and_the_client() {
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from(["kube-job-launcher", "serve", "--template-configmap", "a,b"]).expect("parse");
        let Command::Serve(args) = cli.command else { panic!("serve") };
        assert_eq!(args.templates.config_maps, vec!["a", "b"]);
        let cli = Cli::try_parse_from(["kube-job-launcher", "get", "some-job"]).expect("parse");
        assert!(matches!(cli.command, Command::Client(c) if matches!(*c, ClientCommand::Get(_))));
    }
}
