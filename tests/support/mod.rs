//! Shared set-up for the integration tests, by concern: the local control plane ([`cluster`]),
//! the launcher in-process ([`app`]) or as a process ([`process`]), SQS ([`sqs`]), a watch that
//! records admissions ([`observer`]), a proxy that cuts connections ([`proxy`]), and Kubernetes'
//! own `$(VAR)` expansion ([`expansion`]).
//!
//! These tests need the real cluster. When it is not there they fail with a message that says how
//! to start it; they never skip.
// Each test binary compiles this whole module but uses only its own part of it; an item that no
// binary uses is deleted, not kept behind this allowance.
#![allow(dead_code, unused_imports)]

pub mod app;
pub mod browser;
pub mod cluster;
pub mod expansion;
pub mod fake_logs;
pub mod observer;
pub mod process;
pub mod proxy;
pub mod sqs;
pub mod sse;

pub use app::*;
pub use cluster::*;
pub use fake_logs::*;
pub use observer::*;
pub use process::*;
pub use proxy::*;
pub use sqs::*;
