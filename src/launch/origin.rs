//! Where a request came from and who sent it: facts recorded on its Job that are not part of what
//! it asks for, and the variables the launcher itself adds for some sources.

use std::collections::BTreeMap;

/// Where a request came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Http,
    Sqs,
    Cli,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Sqs => "sqs",
            Self::Cli => "cli",
        }
    }
}

/// The caller of a request made without auth.
pub const ANONYMOUS: &str = "anonymous";

/// The caller of the launches an SQS queue's messages make.
pub fn sqs_caller(queue_url: &str) -> String {
    format!("sqs:{queue_url}")
}

/// Facts about a request that are recorded on its Job but are not part of what it asks for.
#[derive(Debug, Clone)]
pub struct Origin {
    pub source: Source,
    /// Who asked: the token's user, the Kubernetes username, [`ANONYMOUS`], or
    /// [`sqs_caller`]. Idempotency keys are scoped to it.
    pub caller: String,
    pub request_id: Option<String>,
    pub sqs_message_id: Option<String>,
    pub sqs_queue: Option<String>,
    /// Variables the launcher itself sets on the Job (a raw SQS body's `MESSAGE_BODY` and
    /// `MESSAGE_ID`, the queue URL in scale mode); the caller's env cannot reach these names
    /// unless the template allows them.
    pub launcher_env: BTreeMap<String, String>,
}

impl Origin {
    pub fn new(source: Source, caller: impl Into<String>) -> Self {
        Self {
            source,
            caller: caller.into(),
            request_id: None,
            sqs_message_id: None,
            sqs_queue: None,
            launcher_env: BTreeMap::new(),
        }
    }
}
