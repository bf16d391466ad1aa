//! Logging set-up.

use tracing_subscriber::{EnvFilter, fmt, prelude::*};

use crate::config::{LogArgs, LogFormat};

/// Installs the global tracing subscriber. An invalid filter falls back to `info` with a warning
/// rather than stopping the process.
pub fn init_logging(args: &LogArgs) {
    let (filter, filter_error) = match EnvFilter::try_new(&args.log_filter) {
        Ok(filter) => (filter, None),
        Err(error) => (EnvFilter::new("info"), Some(error)),
    };
    let registry = tracing_subscriber::registry().with(filter);
    match args.log_format {
        LogFormat::Plain => registry.with(fmt::layer()).init(),
        LogFormat::Json => registry.with(fmt::layer().json().flatten_event(true)).init(),
    }
    if let Some(error) = filter_error {
        tracing::warn!(filter = %args.log_filter, %error, "invalid log filter; using `info`");
    }
}
