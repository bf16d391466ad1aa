//! `config view`, `config get-contexts`, `config current-context` and `config use-context`: the
//! CLI's config file, as kubectl's `config` shows and switches kubeconfig contexts.

use super::{
    CliError,
    args::{ConfigCommand, OutputFormat},
    config_file::{self, ConfigFile, Loaded},
    output::{Table, stderr, stdout},
    session::Session,
};

/// What a redacted token reads as.
const REDACTED: &str = "REDACTED";

pub fn config(command: ConfigCommand, session: &Session) -> Result<(), CliError> {
    let loaded = session.config()?;
    match command {
        ConfigCommand::View { raw } => view(&loaded, raw, session.format()),
        ConfigCommand::GetContexts => get_contexts(&loaded, session),
        ConfigCommand::CurrentContext => current_context(&loaded, session),
        ConfigCommand::UseContext { name } => use_context(&loaded, &name),
    }
}

fn where_(loaded: &Loaded) -> String {
    loaded.path.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| "(no HOME, no XDG_CONFIG_HOME)".into())
}

/// The file's contents with every token replaced by `REDACTED`.
pub fn redacted(file: &ConfigFile) -> ConfigFile {
    let mut file = file.clone();
    for context in &mut file.contexts {
        if context.token.is_some() {
            context.token = Some(REDACTED.into());
        }
    }
    file
}

fn view(loaded: &Loaded, raw: bool, format: OutputFormat) -> Result<(), CliError> {
    if !loaded.exists {
        stderr(&format!("No config file at {}.", where_(loaded)));
    }
    let file = if raw { loaded.file.clone() } else { redacted(&loaded.file) };
    stdout(&encode(&file, format)?)
}

/// JSON for `-o json`, else YAML; encoded from the struct, not through a JSON value, so that keys
/// keep the file's order (name first).
fn encode<T: serde::Serialize>(value: &T, format: OutputFormat) -> Result<String, CliError> {
    let text = if format == OutputFormat::Json {
        serde_json::to_string_pretty(value).map(|t| t + "\n").map_err(|e| e.to_string())
    } else {
        serde_saphyr::to_string(value).map_err(|e| e.to_string())
    };
    text.map_err(|e| CliError::Unexpected(format!("cannot encode the config file: {e}")))
}

/// The name of the context in use, if one is named and exists.
fn active<'a>(loaded: &'a Loaded, session: &Session) -> Result<Option<&'a str>, CliError> {
    Ok(loaded.context(session.args().server.context.as_deref(), &config_file::process_env)?.map(|c| c.name.as_str()))
}

fn get_contexts(loaded: &Loaded, session: &Session) -> Result<(), CliError> {
    let format = session.format();
    if format.is_document() {
        return stdout(&encode(&redacted(&loaded.file).contexts, format)?);
    }
    if format == OutputFormat::Name {
        return stdout(&loaded.file.contexts.iter().map(|c| format!("{}\n", c.name)).collect::<String>());
    }
    if loaded.file.contexts.is_empty() {
        stderr(&format!("No contexts in {}.", where_(loaded)));
        return Ok(());
    }
    // A dangling current-context is no reason not to list the contexts.
    let current = active(loaded, session).ok().flatten();
    let mut table = Table::new(&["CURRENT", "NAME", "SERVER", "TOKEN", "CA"]);
    for c in &loaded.file.contexts {
        let token = match (&c.token, &c.token_file) {
            (Some(_), _) => "token".to_string(),
            (None, Some(file)) => format!("file {}", file.display()),
            (None, None) => String::new(),
        };
        let ca = match (&c.ca_file, c.insecure_skip_tls_verify) {
            (_, true) => "insecure".to_string(),
            (Some(file), false) => file.display().to_string(),
            (None, false) => String::new(),
        };
        table.row(vec![
            if current == Some(c.name.as_str()) { "*" } else { "" }.to_string(),
            c.name.clone(),
            c.server.clone().unwrap_or_default(),
            token,
            ca,
        ]);
    }
    // An empty CURRENT cell shows as "-" elsewhere; here blank reads better, as in kubectl.
    let text: String = table
        .render_with(session.headers())
        .lines()
        .map(|l| match l.strip_prefix('-') {
            Some(rest) => format!(" {rest}\n"),
            None => format!("{l}\n"),
        })
        .collect();
    stdout(&text)
}

fn current_context(loaded: &Loaded, session: &Session) -> Result<(), CliError> {
    match active(loaded, session)? {
        Some(name) => stdout(&format!("{name}\n")),
        None => Err(CliError::Usage(format!(
            "no current context in {}: set one with `kube-job-launcher config use-context NAME`",
            where_(loaded)
        ))),
    }
}

fn use_context(loaded: &Loaded, name: &str) -> Result<(), CliError> {
    let Some(path) = loaded.path.as_ref().filter(|_| loaded.exists) else {
        return Err(CliError::Usage(format!(
            "there is no config file at {} to hold contexts; write one first (see `kube-job-launcher config --help`)",
            where_(loaded)
        )));
    };
    if !loaded.file.contexts.iter().any(|c| c.name == name) {
        let names: Vec<&str> = loaded.file.contexts.iter().map(|c| c.name.as_str()).collect();
        return Err(CliError::Usage(format!(
            "no context {name:?} in {} (contexts: {})",
            path.display(),
            if names.is_empty() { "none".to_string() } else { names.join(", ") }
        )));
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| CliError::Usage(format!("cannot read the config file {}: {e}", path.display())))?;
    let edited = config_file::with_current_context(&text, &loaded.file, name)
        .map_err(|e| CliError::Unexpected(format!("cannot set current-context in {}: {e}", path.display())))?;
    config_file::write_atomically(path, &edited)?;
    stdout(&format!("Switched to context {name:?}.\n"))
}
