//! The binary: the command tree (`serve`, the CLI's commands, and two document generators), and
//! for each command, building the application or running the client.

use std::process::ExitCode;

use clap::{ArgMatches, Args, CommandFactory, FromArgMatches, Parser, Subcommand, parser::ValueSource};
use kube_job_launcher::{
    app::{Application, kube_clients},
    cli::{ClientCommand, GlobalArgs},
    config::{LogArgs, ServeArgs},
    http, telemetry,
};

const EXAMPLES: &str = "\
Examples:
  # Run the launcher (in a cluster, or against the kubeconfig's cluster)
  kube-job-launcher serve --namespace batch --max-active 30

  # The CLI: launch a template, wait for the Job and exit with its outcome
  kube-job-launcher launch -t greeting -p name=Ada --wait

  # Global flags go before or after the command
  kube-job-launcher --server https://launcher.example.com --ca-file ca.pem list -l 'team in (data,ml)'
  kube-job-launcher list -o wide --context prod

  # Shell completion (bash; also zsh, fish)
  source <(kube-job-launcher completion bash)";

const SERVE_EXAMPLES: &str = "\
Examples:
  # The original launcher's set-up: templates from the ConfigMap job-template-cm
  kube-job-launcher serve --namespace batch

  # Bearer tokens from a kube-apiserver static token file, at most 30 active Jobs
  kube-job-launcher serve --auth-token-file /etc/launcher/tokens --max-active 30

  # One Job per SQS message
  kube-job-launcher serve --sqs-queue-url https://sqs.eu-central-1.amazonaws.com/123456789012/inputqueue

Every flag and its environment variable: docs/configuration.md.";

const COMPLETION_EXAMPLES: &str = "\
Examples:
  # bash, for this shell; or install it for every new one
  source <(kube-job-launcher completion bash)
  kube-job-launcher completion bash > ~/.local/share/bash-completion/completions/kube-job-launcher

  # zsh: into a folder on $fpath
  kube-job-launcher completion zsh > \"${fpath[1]}/_kube-job-launcher\"

  # fish
  kube-job-launcher completion fish > ~/.config/fish/completions/kube-job-launcher.fish";

#[derive(Debug, Parser)]
#[command(
    name = "kube-job-launcher",
    version,
    about = "Turns HTTP requests and SQS messages into Kubernetes Jobs",
    after_help = EXAMPLES
)]
struct Cli {
    #[command(subcommand)]
    command: Command,

    #[command(flatten)]
    log: LogArgs,

    #[command(flatten)]
    client: GlobalArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the launcher service.
    #[command(after_help = SERVE_EXAMPLES)]
    Serve(Box<ServeArgs>),
    /// Print the HTTP API's OpenAPI document.
    #[command(after_help = "Examples:\n  kube-job-launcher openapi > docs/openapi.json")]
    Openapi,
    /// Print the configuration reference (every flag and environment variable) as markdown.
    #[command(hide = true, after_help = "Examples:\n  kube-job-launcher config-reference > docs/configuration.md")]
    ConfigReference,
    /// Print a shell completion script (bash, zsh, fish, elvish or powershell).
    #[command(after_help = COMPLETION_EXAMPLES)]
    Completion {
        /// The shell.
        shell: clap_complete::Shell,
    },
    // The CLI: launch, get, list, cancel, logs, templates, render, config (see docs/cli.md).
    #[command(flatten)]
    Client(Box<ClientCommand>),
}

/// The commands that are not the CLI's, which take none of its global flags.
const NOT_CLIENT: [&str; 4] = ["serve", "openapi", "config-reference", "completion"];

/// The command tree, with the CLI's global flags hidden from the help of the commands that
/// ignore them.
fn command() -> clap::Command {
    let mut command = Cli::command();
    // Globals are copied into each subcommand when the tree is built; hide the copies after.
    command.build();
    let client_flags: Vec<String> =
        GlobalArgs::augment_args(clap::Command::new("x")).get_arguments().map(|a| a.get_id().to_string()).collect();
    for name in NOT_CLIENT {
        // `mut_args` keeps the arguments in place (`mut_arg` would move one to the end, which a
        // built command's index of flags does not expect).
        command = command.mut_subcommand(name, |sub| {
            sub.mut_args(|a| if client_flags.iter().any(|id| a.get_id() == id.as_str()) { a.hide(true) } else { a })
        });
    }
    command
}

/// Parses the command line; a CLI flag given to a command that would ignore it (`serve --token`)
/// is refused rather than ignored.
fn parse() -> Result<Cli, clap::Error> {
    let mut command = command();
    let matches = command.try_get_matches_from_mut(std::env::args_os())?;
    if let Some((name, sub)) = matches.subcommand()
        && NOT_CLIENT.contains(&name)
        && let Some(flag) = explicit_client_flag(sub)
    {
        return Err(command.error(
            clap::error::ErrorKind::ArgumentConflict,
            format!("{flag} is a flag of the CLI commands (launch, list, ...); `{name}` does not take it"),
        ));
    }
    Cli::from_arg_matches(&matches)
}

/// The first of the CLI's global flags given on the command line, as `--name`.
fn explicit_client_flag(matches: &ArgMatches) -> Option<String> {
    GlobalArgs::augment_args(clap::Command::new("x")).get_arguments().find_map(|arg| {
        let id = arg.get_id().as_str();
        (matches.try_contains_id(id).unwrap_or(false) && matches.value_source(id) == Some(ValueSource::CommandLine))
            .then(|| arg.get_long().map(|l| format!("--{l}")).unwrap_or_else(|| id.to_string()))
    })
}

fn main() -> ExitCode {
    kube_job_launcher::memory::limit_arenas();
    let cli = match parse() {
        Ok(cli) => cli,
        Err(error) => error.exit(),
    };
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    // The server's thread count is its flag's; the CLI's commands keep tokio's default.
    if let Command::Serve(args) = &cli.command {
        runtime.worker_threads(usize::from(args.runtime.worker_threads));
    }
    match runtime.enable_all().build() {
        Ok(runtime) => runtime.block_on(run(cli)),
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
            // Dropped at the end of this arm, after the last line: what it holds is written then.
            let _logs = telemetry::init_logging(&cli.log);
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
        Command::Client(command) => kube_job_launcher::cli::run(*command, cli.client).await,
        Command::Completion { shell } => {
            let mut out = Vec::new();
            clap_complete::generate(shell, &mut command(), "kube-job-launcher", &mut out);
            match kube_job_launcher::cli::output::stdout(&String::from_utf8_lossy(&out)) {
                Ok(()) | Err(kube_job_launcher::cli::CliError::BrokenPipe) => ExitCode::SUCCESS,
                Err(error) => {
                    eprintln!("error: {error}");
                    ExitCode::FAILURE
                }
            }
        }
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
    use super::*;

    fn parse_from(args: &[&str]) -> Result<Cli, clap::Error> {
        let mut argv = vec!["kube-job-launcher"];
        argv.extend_from_slice(args);
        let mut command = command();
        let matches = command.try_get_matches_from_mut(argv)?;
        Cli::from_arg_matches(&matches)
    }

    #[test]
    fn the_command_tree_is_consistent_and_routes_serve_and_the_client() {
        Cli::command().debug_assert();
        let cli = parse_from(&["serve", "--template-configmap", "a,b"]).expect("parse");
        let Command::Serve(args) = cli.command else { panic!("serve") };
        assert_eq!(args.templates.config_maps, vec!["a", "b"]);
        assert_eq!(args.runtime.worker_threads, 1, "one worker thread unless asked");
        let cli = parse_from(&["serve", "--worker-threads", "4"]).expect("parse");
        assert!(matches!(cli.command, Command::Serve(a) if a.runtime.worker_threads == 4));
        for bad in ["0", "many"] {
            assert!(parse_from(&["serve", "--worker-threads", bad]).is_err(), "--worker-threads {bad}");
        }
        let cli = parse_from(&["get", "some-job"]).expect("parse");
        assert!(matches!(cli.command, Command::Client(c) if matches!(*c, ClientCommand::Get(_))));
        let cli = parse_from(&["--server", "http://h:1", "get", "some-job", "-o", "json"]).expect("parse");
        assert_eq!(cli.client.server.server.as_deref(), Some("http://h:1"));
        assert!(matches!(parse_from(&["completion", "zsh"]).map(|c| c.command), Ok(Command::Completion { .. })));
    }

    #[test]
    fn serve_refuses_the_clis_flags_and_hides_them_from_its_help() {
        let mut cmd = command();
        let matches = cmd.try_get_matches_from_mut(["kube-job-launcher", "serve", "--token", "x"]).expect("parses");
        let (name, sub) = matches.subcommand().expect("a subcommand");
        assert_eq!((name, explicit_client_flag(sub).as_deref()), ("serve", Some("--token")));
        let matches = cmd.try_get_matches_from_mut(["kube-job-launcher", "-o", "json", "openapi"]).expect("parses");
        assert_eq!(matches.subcommand().and_then(|(_, m)| explicit_client_flag(m)).as_deref(), Some("--output"));
        let matches = cmd.try_get_matches_from_mut(["kube-job-launcher", "serve"]).expect("parses");
        assert_eq!(matches.subcommand().and_then(|(_, m)| explicit_client_flag(m)), None);

        let mut cmd = command();
        let serve = cmd.find_subcommand_mut("serve").expect("serve").render_long_help().to_string();
        assert!(!serve.contains("--insecure-skip-tls-verify") && !serve.contains("--no-headers"), "{serve}");
        assert!(serve.contains("--template-configmap") && serve.contains("--log"), "serve keeps its own flags");
        let list = cmd.find_subcommand_mut("list").expect("list").render_long_help().to_string();
        assert!(list.contains("--insecure-skip-tls-verify") && list.contains("--no-headers"), "{list}");
    }

    #[test]
    fn every_help_has_examples() {
        fn check(command: &mut clap::Command, path: &str) {
            let help = command.render_help().to_string();
            assert!(help.contains("Examples:\n  "), "{path} -h has no examples:\n{help}");
            let long = command.render_long_help().to_string();
            assert!(long.contains("Examples:\n  "), "{path} --help has no examples");
            let names: Vec<String> = command.get_subcommands().map(|s| s.get_name().to_string()).collect();
            for name in names {
                if name == "help" {
                    continue;
                }
                if let Some(sub) = command.find_subcommand_mut(&name) {
                    check(sub, &format!("{path} {name}"));
                }
            }
        }
        let mut cmd = command();
        check(&mut cmd, "kube-job-launcher");
    }
}
