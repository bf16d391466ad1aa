//! Where a request came from and who sent it: facts recorded on its Job that are not part of what
//! it asks for.

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

/// Facts about a request that are recorded on its Job but are not part of what it asks for.
#[derive(Debug, Clone)]
pub struct Origin {
    pub source: Source,
    pub request_id: Option<String>,
    pub sqs_message_id: Option<String>,
    pub sqs_queue: Option<String>,
    pub requested_by: Option<String>,
}

impl Origin {
    pub fn new(source: Source) -> Self {
        Self { source, request_id: None, sqs_message_id: None, sqs_queue: None, requested_by: None }
    }
}
