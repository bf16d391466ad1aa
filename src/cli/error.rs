//! Why a CLI command did not succeed, and the exit code each reason gives.

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
        "cannot connect to the launcher at {server}: {cause}\n  is it running, and does --server (or JOB_LAUNCHER_SERVER, or the config file's context) name its API?"
    )]
    Connect { server: String, cause: String },

    /// The server's certificate is not trusted (or not for that name).
    #[error(
        "the launcher at {server} presented a certificate that {trust} does not accept: {cause}\n  give --ca-file with the CA that signed it (or, for a test server only, --insecure-skip-tls-verify)"
    )]
    Certificate { server: String, cause: String, trust: String },

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
