//! What every CLI command shares: the global flags, and the connection and config file they lead to.

use super::{
    args::{GlobalArgs, OutputFormat},
    client::ApiClient,
    config_file::{self, Connection, Loaded},
    error::CliError,
};

/// What every command shares: the global flags, with the config file read on first need.
pub struct Session {
    args: GlobalArgs,
}

impl Session {
    pub fn new(args: GlobalArgs) -> Self {
        Self { args }
    }

    /// The config file, read now (a command that needs no server never reads it).
    pub fn config(&self) -> Result<Loaded, CliError> {
        let env = config_file::process_env;
        config_file::load(config_file::config_path(self.args.server.config.as_deref(), &env))
    }

    /// The connection: flags, then environment, then the config file's context.
    pub fn connection(&self) -> Result<Connection, CliError> {
        config_file::resolve(&self.args.server, &config_file::process_env, &self.config()?)
    }

    /// A client of the launcher the connection names.
    pub fn client(&self) -> Result<ApiClient, CliError> {
        ApiClient::new(&self.connection()?)
    }

    /// The output format asked for (a table by default).
    pub fn format(&self) -> OutputFormat {
        self.args.output.format()
    }

    /// Whether tables print their header row.
    pub fn headers(&self) -> bool {
        !self.args.output.no_headers
    }

    pub fn args(&self) -> &GlobalArgs {
        &self.args
    }
}
