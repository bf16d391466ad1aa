//! What one attempt at delivering a notice came to.

/// What one attempt at one target came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    Delivered,
    /// Worth trying again (no answer, 5xx, 408, 429).
    Retry(String),
    /// The receiver refused it for good (another 4xx).
    Refused(String),
}
