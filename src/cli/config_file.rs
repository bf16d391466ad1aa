//! The CLI's config file, with kubeconfig-like contexts, and how a command's connection is
//! settled: a flag wins over its environment variable, which wins over the chosen context, which
//! wins over the default.
//!
//! ```yaml
//! current-context: prod
//! contexts:
//!   - name: prod
//!     server: https://launcher.example.com
//!     token-file: prod.token        # relative paths are relative to this file's folder
//!     ca-file: launcher-ca.pem
//!   - name: local
//!     server: http://127.0.0.1:8080
//! ```
//!
//! The file is at `--config`, else `JOB_LAUNCHER_CONFIG`, else
//! `$XDG_CONFIG_HOME/kube-job-launcher/config`, else `~/.config/kube-job-launcher/config`. A file
//! named by the flag or the variable must exist; the default one may be missing (no contexts).

use std::{
    io::ErrorKind,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use super::{args::ServerArgs, error::CliError};

/// The server when neither flags, environment nor a context name one.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:8080";

/// The file's contents.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ConfigFile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_context: Option<String>,
    #[serde(default)]
    pub contexts: Vec<Context>,
}

/// A named launcher and how to reach it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Context {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_file: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub insecure_skip_tls_verify: bool,
}

/// A config file as read: where it is (if anywhere) and what it says.
#[derive(Debug, Clone, Default)]
pub struct Loaded {
    pub path: Option<PathBuf>,
    /// False when the file does not exist (then `file` is empty).
    pub exists: bool,
    pub file: ConfigFile,
}

/// Looks an environment variable up; empty counts as unset. A function, so tests can give their own.
pub type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The process's environment, empty values left out.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// Where the config file is, and whether the user named it (then it must exist).
pub fn config_path(flag: Option<&Path>, env: Env) -> Option<(PathBuf, bool)> {
    if let Some(path) = flag {
        return Some((path.to_path_buf(), true));
    }
    if let Some(path) = env("JOB_LAUNCHER_CONFIG") {
        return Some((PathBuf::from(path), true));
    }
    let base = env("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| env("HOME").map(|home| Path::new(&home).join(".config")))?;
    Some((base.join("kube-job-launcher").join("config"), false))
}

/// Reads the config file at `path` (see [`config_path`]).
pub fn load(path: Option<(PathBuf, bool)>) -> Result<Loaded, CliError> {
    let Some((path, explicit)) = path else { return Ok(Loaded::default()) };
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == ErrorKind::NotFound && !explicit => {
            return Ok(Loaded { path: Some(path), exists: false, file: ConfigFile::default() });
        }
        Err(e) => return Err(CliError::Usage(format!("cannot read the config file {}: {e}", path.display()))),
    };
    let file =
        parse(&text).map_err(|e| CliError::Usage(format!("the config file {} is invalid: {e}", path.display())))?;
    Ok(Loaded { path: Some(path), exists: true, file })
}

/// Parses and checks a config file's text.
pub fn parse(text: &str) -> Result<ConfigFile, String> {
    if text.trim().is_empty() {
        return Ok(ConfigFile::default());
    }
    let file: ConfigFile = serde_saphyr::from_str(text).map_err(|e| {
        let message = e.to_string();
        message.strip_prefix("error: ").map(String::from).unwrap_or(message)
    })?;
    let mut seen = std::collections::BTreeSet::new();
    for (i, context) in file.contexts.iter().enumerate() {
        let name = &context.name;
        if name.trim().is_empty() {
            return Err(format!("contexts[{i}] has no name"));
        }
        if !seen.insert(name.as_str()) {
            return Err(format!("two contexts are named {name:?}"));
        }
        if context.token.is_some() && context.token_file.is_some() {
            return Err(format!("context {name:?} has both token and token-file: keep one"));
        }
        if context.ca_file.is_some() && context.insecure_skip_tls_verify {
            return Err(format!("context {name:?} has both ca-file and insecure-skip-tls-verify: keep one"));
        }
    }
    Ok(file)
}

impl Loaded {
    /// The context in use: `--context`, else `JOB_LAUNCHER_CONTEXT`, else the file's
    /// current-context; `None` when none is named.
    pub fn context(&self, flag: Option<&str>, env: Env) -> Result<Option<&Context>, CliError> {
        let env_name = env("JOB_LAUNCHER_CONTEXT");
        let (name, from) = match (flag, env_name.as_deref(), self.file.current_context.as_deref()) {
            (Some(name), _, _) => (name, "--context"),
            (None, Some(name), _) => (name, "JOB_LAUNCHER_CONTEXT"),
            (None, None, Some(name)) => (name, "current-context"),
            (None, None, None) => return Ok(None),
        };
        if let Some(context) = self.file.contexts.iter().find(|c| c.name == name) {
            return Ok(Some(context));
        }
        let file = self.path.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| "(none)".into());
        Err(CliError::Usage(if !self.exists {
            format!("{from} {name:?}: there is no config file ({file}) to hold contexts")
        } else if self.file.contexts.is_empty() {
            format!("{from} {name:?}: the config file {file} has no contexts")
        } else {
            let names: Vec<&str> = self.file.contexts.iter().map(|c| c.name.as_str()).collect();
            format!("{from} {name:?}: no such context in {file} (contexts: {})", names.join(", "))
        }))
    }

    /// A path from the file, made absolute: `~/` is the home folder, a relative path is relative
    /// to the file's folder (as kubeconfig's are).
    fn resolve_path(&self, path: &Path, env: Env) -> PathBuf {
        if let Ok(rest) = path.strip_prefix("~")
            && let Some(home) = env("HOME")
        {
            return Path::new(&home).join(rest);
        }
        match self.path.as_ref().and_then(|p| p.parent()) {
            Some(folder) if path.is_relative() => folder.join(path),
            _ => path.to_path_buf(),
        }
    }
}

/// Where the bearer token comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    Token(String),
    File(PathBuf),
}

/// How an https server's certificate is checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Tls {
    /// Against the system's trust store.
    #[default]
    System,
    /// Against this CA file only.
    CaFile(PathBuf),
    /// Not at all.
    Insecure,
}

/// A command's connection, settled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    pub server: String,
    pub credential: Option<Credential>,
    pub tls: Tls,
    /// The context it came from, if any (for messages).
    pub context: Option<String>,
}

impl Connection {
    /// A connection to `server` with nothing else: for tests.
    pub fn to(server: &str) -> Self {
        Self { server: server.into(), credential: None, tls: Tls::System, context: None }
    }
}

/// Settles the connection: each setting from its flag, else its environment variable, else the
/// context, else the default. The token (`--token` or `--token-file`) and the certificate check
/// (`--ca-file` or `--insecure-skip-tls-verify`) are each taken whole from the first place that
/// sets either half.
pub fn resolve(flags: &ServerArgs, env: Env, config: &Loaded) -> Result<Connection, CliError> {
    let context = config.context(flags.context.as_deref(), env)?;
    let server = flags
        .server
        .clone()
        .or_else(|| env("JOB_LAUNCHER_SERVER"))
        .or_else(|| context.and_then(|c| c.server.clone()))
        .unwrap_or_else(|| DEFAULT_SERVER.to_string());

    // clap refuses both halves at one level of the command line, not one before the command
    // and one after it.
    if flags.token.is_some() && flags.token_file.is_some() {
        return Err(CliError::Usage("--token and --token-file: give one".into()));
    }
    if flags.ca_file.is_some() && flags.insecure_skip_tls_verify {
        return Err(CliError::Usage("--ca-file and --insecure-skip-tls-verify: give one".into()));
    }
    let credential = match (&flags.token, &flags.token_file) {
        (Some(token), _) => Some(Credential::Token(token.clone())),
        (None, Some(file)) => Some(Credential::File(file.clone())),
        (None, None) => match (env("JOB_LAUNCHER_TOKEN"), env("JOB_LAUNCHER_TOKEN_FILE")) {
            (Some(_), Some(_)) => {
                return Err(CliError::Usage(
                    "JOB_LAUNCHER_TOKEN and JOB_LAUNCHER_TOKEN_FILE are both set: keep one".into(),
                ));
            }
            (Some(token), None) => Some(Credential::Token(token)),
            (None, Some(file)) => Some(Credential::File(file.into())),
            (None, None) => context.and_then(|c| match (&c.token, &c.token_file) {
                (Some(token), _) => Some(Credential::Token(token.clone())),
                (None, Some(file)) => Some(Credential::File(config.resolve_path(file, env))),
                (None, None) => None,
            }),
        },
    };

    let tls = if flags.insecure_skip_tls_verify {
        Tls::Insecure
    } else if let Some(file) = &flags.ca_file {
        Tls::CaFile(file.clone())
    } else if let Some(file) = env("JOB_LAUNCHER_CA_FILE") {
        Tls::CaFile(file.into())
    } else {
        match context {
            Some(c) if c.insecure_skip_tls_verify => Tls::Insecure,
            Some(Context { ca_file: Some(file), .. }) => Tls::CaFile(config.resolve_path(file, env)),
            _ => Tls::System,
        }
    };
    Ok(Connection { server, credential, tls, context: context.map(|c| c.name.clone()) })
}

/// The file's text with `current-context` set to `name`. The line is replaced (or added at the
/// top) so that comments and layout stay; a file whose layout defeats that (flow style, JSON) is
/// written out anew from what it says.
pub fn with_current_context(text: &str, file: &ConfigFile, name: &str) -> Result<String, String> {
    let plain = !name.is_empty()
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/' | '@'))
        && serde_saphyr::from_str::<String>(name).is_ok_and(|n| n == name);
    let value = if plain { name.to_string() } else { serde_json::to_string(name).map_err(|e| e.to_string())? };
    let line = format!("current-context: {value}");
    let mut found = false;
    let mut lines: Vec<String> = text
        .lines()
        .map(|l| {
            if !found && (l.starts_with("current-context:") || l.starts_with("current-context :")) {
                found = true;
                line.clone()
            } else {
                l.to_string()
            }
        })
        .collect();
    if !found {
        lines.insert(0, line);
    }
    let mut edited = lines.join("\n");
    edited.push('\n');
    let wanted = ConfigFile { current_context: Some(name.to_string()), ..file.clone() };
    if parse(&edited).ok().as_ref() == Some(&wanted) {
        return Ok(edited);
    }
    serde_saphyr::to_string(&wanted).map_err(|e| e.to_string())
}

/// Writes the file through a temporary file beside it, renamed over it, keeping its permissions.
pub fn write_atomically(path: &Path, text: &str) -> Result<(), CliError> {
    let fail = |e: std::io::Error| CliError::Usage(format!("cannot write the config file {}: {e}", path.display()));
    let tmp = path.with_file_name(format!(
        ".{}.tmp-{}",
        path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
        std::process::id()
    ));
    std::fs::write(&tmp, text).map_err(fail)?;
    if let Ok(meta) = std::fs::metadata(path) {
        let _ = std::fs::set_permissions(&tmp, meta.permissions());
    }
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        fail(e)
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    const SAMPLE: &str = "\
# my launchers
current-context: prod
contexts:
  - name: prod
    server: https://launcher.example.com
    token-file: prod.token
    ca-file: ~/ca.pem
  - name: local   # port-forward
    server: http://127.0.0.1:8080
    token: t0k3n
  - name: lab
    server: https://lab:8443
    insecure-skip-tls-verify: true
";

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: BTreeMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |name: &str| map.get(name).cloned()
    }

    fn loaded(text: &str) -> Loaded {
        Loaded {
            path: Some("/home/me/.config/kube-job-launcher/config".into()),
            exists: true,
            file: parse(text).expect("parses"),
        }
    }

    #[test]
    fn the_file_is_found_where_xdg_says_else_under_home() {
        let none = env_of(&[]);
        assert_eq!(config_path(None, &none), None);
        let home = env_of(&[("HOME", "/home/me")]);
        assert_eq!(config_path(None, &home), Some(("/home/me/.config/kube-job-launcher/config".into(), false)));
        let xdg = env_of(&[("HOME", "/home/me"), ("XDG_CONFIG_HOME", "/xdg")]);
        assert_eq!(config_path(None, &xdg), Some(("/xdg/kube-job-launcher/config".into(), false)));
        let relative_xdg = env_of(&[("HOME", "/home/me"), ("XDG_CONFIG_HOME", "rel")]);
        assert_eq!(
            config_path(None, &relative_xdg).map(|p| p.0),
            Some("/home/me/.config/kube-job-launcher/config".into())
        );
        let named = env_of(&[("HOME", "/home/me"), ("JOB_LAUNCHER_CONFIG", "/etc/kjl")]);
        assert_eq!(config_path(None, &named), Some(("/etc/kjl".into(), true)));
        assert_eq!(config_path(Some(Path::new("c.yaml")), &named), Some(("c.yaml".into(), true)));
    }

    #[test]
    fn without_a_config_file_there_are_no_contexts_but_a_named_file_must_exist() {
        let dir = std::env::temp_dir().join(format!("kjl-config-{}", std::process::id()));
        let missing = dir.join("nope");
        let loaded = load(Some((missing.clone(), false))).expect("fine");
        assert!(!loaded.exists && loaded.file.contexts.is_empty());
        let err = load(Some((missing, true))).expect_err("named");
        assert!(err.to_string().contains("cannot read the config file"), "{err}");
        assert!(parse("").is_ok_and(|f| f == ConfigFile::default()));
        assert!(parse("# only a comment\n").is_ok());
    }

    #[test]
    fn malformed_files_say_what_is_wrong() {
        let cases = [
            ("contexts:\n  - name: a\n    sever: x\n", "sever"),
            ("contexts: 3\n", ""),
            ("current-context: [\n", ""),
            ("contexts:\n  - server: x\n", "name"),
            ("contexts:\n  - name: a\n  - name: a\n", "two contexts are named \"a\""),
            ("contexts:\n  - name: ''\n", "contexts[0] has no name"),
            ("contexts:\n  - name: a\n    token: x\n    token-file: y\n", "both token and token-file"),
            (
                "contexts:\n  - name: a\n    ca-file: x\n    insecure-skip-tls-verify: true\n",
                "both ca-file and insecure",
            ),
        ];
        for (text, want) in cases {
            let err = parse(text).expect_err(text);
            assert!(err.contains(want), "{text}: {err}");
        }
        let dir = std::env::temp_dir().join(format!("kjl-config-bad-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("config");
        std::fs::write(&path, "contexts:\n  - name: a\n    sever: x\n").expect("write");
        let err = load(Some((path.clone(), false))).expect_err("malformed");
        assert!(err.to_string().starts_with(&format!("the config file {} is invalid: ", path.display())), "{err}");
        assert_eq!(err.exit_code(), super::super::EXIT_ERROR);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_current_context_gives_server_token_and_ca_with_paths_made_absolute() {
        let config = loaded(SAMPLE);
        let env = env_of(&[("HOME", "/home/me")]);
        let c = resolve(&ServerArgs::default(), &env, &config).expect("resolves");
        assert_eq!(c.server, "https://launcher.example.com");
        assert_eq!(c.credential, Some(Credential::File("/home/me/.config/kube-job-launcher/prod.token".into())));
        assert_eq!(c.tls, Tls::CaFile("/home/me/ca.pem".into()));
        assert_eq!(c.context.as_deref(), Some("prod"));

        let local = ServerArgs { context: Some("local".into()), ..Default::default() };
        let c = resolve(&local, &env, &config).expect("resolves");
        assert_eq!(
            (c.server.as_str(), c.credential, c.tls),
            ("http://127.0.0.1:8080", Some(Credential::Token("t0k3n".into())), Tls::System)
        );
        let lab = env_of(&[("JOB_LAUNCHER_CONTEXT", "lab")]);
        assert_eq!(resolve(&ServerArgs::default(), &lab, &config).ok().map(|c| c.tls), Some(Tls::Insecure));
    }

    #[test]
    fn flags_win_over_the_environment_which_wins_over_the_context() {
        let config = loaded(SAMPLE);
        let env = env_of(&[("JOB_LAUNCHER_SERVER", "http://env:1"), ("JOB_LAUNCHER_TOKEN", "env-token")]);
        let c = resolve(&ServerArgs::default(), &env, &config).expect("resolves");
        assert_eq!(c.server, "http://env:1");
        assert_eq!(c.credential, Some(Credential::Token("env-token".into())));
        assert_eq!(
            c.tls,
            Tls::CaFile("/home/me/.config/kube-job-launcher/~/ca.pem".into()),
            "no HOME: a relative path"
        );

        let flags = ServerArgs {
            server: Some("http://flag:2".into()),
            token_file: Some("my.token".into()),
            insecure_skip_tls_verify: true,
            ..Default::default()
        };
        let c = resolve(&flags, &env, &config).expect("resolves");
        assert_eq!(c.server, "http://flag:2");
        assert_eq!(c.credential, Some(Credential::File("my.token".into())), "a flag's path is the user's, as given");
        assert_eq!(c.tls, Tls::Insecure, "the flag replaces the context's ca-file");
        let ca = env_of(&[("JOB_LAUNCHER_CA_FILE", "/env/ca.pem")]);
        assert_eq!(
            resolve(&ServerArgs::default(), &ca, &config).map(|c| c.tls).ok(),
            Some(Tls::CaFile("/env/ca.pem".into()))
        );

        let both = env_of(&[("JOB_LAUNCHER_TOKEN", "a"), ("JOB_LAUNCHER_TOKEN_FILE", "b")]);
        assert!(resolve(&ServerArgs::default(), &both, &config).is_err());
        let flag_wins = ServerArgs { token: Some("f".into()), ..Default::default() };
        assert_eq!(
            resolve(&flag_wins, &both, &config).ok().and_then(|c| c.credential),
            Some(Credential::Token("f".into()))
        );
        let two_flags = ServerArgs { token: Some("f".into()), token_file: Some("g".into()), ..Default::default() };
        assert!(resolve(&two_flags, &env, &config).is_err_and(|e| e.to_string().contains("--token and --token-file")));
        let two_checks = ServerArgs { ca_file: Some("c".into()), insecure_skip_tls_verify: true, ..Default::default() };
        assert!(resolve(&two_checks, &env, &config).is_err());
    }

    #[test]
    fn without_a_file_or_a_context_the_defaults_apply_and_a_named_context_must_exist() {
        let env = env_of(&[]);
        let c = resolve(&ServerArgs::default(), &env, &Loaded::default()).expect("resolves");
        assert_eq!(c, Connection::to(DEFAULT_SERVER));
        let named = ServerArgs { context: Some("prod".into()), ..Default::default() };
        let missing = Loaded { path: Some("/x/config".into()), ..Default::default() };
        let err = resolve(&named, &env, &missing).expect_err("no file");
        assert!(err.to_string().contains("--context \"prod\": there is no config file (/x/config)"), "{err}");
        let other = ServerArgs { context: Some("staging".into()), ..Default::default() };
        let err = resolve(&other, &env, &loaded(SAMPLE)).expect_err("no such context");
        assert!(
            err.to_string()
                .contains("no such context in /home/me/.config/kube-job-launcher/config (contexts: prod, local, lab)"),
            "{err}"
        );
        let dangling = loaded("current-context: gone\ncontexts: []\n");
        let err = resolve(&ServerArgs::default(), &env, &dangling).expect_err("dangling");
        assert!(err.to_string().starts_with("current-context \"gone\": the config file"), "{err}");
    }

    #[test]
    fn use_context_edits_one_line_and_keeps_comments() {
        let file = parse(SAMPLE).expect("parses");
        let edited = with_current_context(SAMPLE, &file, "local").expect("edits");
        assert_eq!(edited, SAMPLE.replace("current-context: prod", "current-context: local"));
        let without = SAMPLE.replace("current-context: prod\n", "");
        let edited = with_current_context(&without, &parse(&without).expect("parses"), "lab").expect("edits");
        assert!(edited.starts_with("current-context: lab\n# my launchers\n"), "{edited}");
        let odd = "{\"contexts\": [{\"name\": \"a b: c\"}]}";
        let edited = with_current_context(odd, &parse(odd).expect("parses"), "a b: c").expect("rewrites");
        assert_eq!(parse(&edited).ok().and_then(|f| f.current_context), Some("a b: c".into()), "{edited}");
    }
}
