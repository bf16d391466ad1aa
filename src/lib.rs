//! kube-job-launcher: turns HTTP requests and SQS messages into Kubernetes Jobs.
//!
//! The binary's entry point is `main.rs`; everything else lives here so that integration tests
//! can build and run the real application.

pub mod admission;
pub mod api;
pub mod app;
pub mod cli;
pub mod config;
pub mod error;
#[cfg(test)]
mod fake_apiserver;
pub mod health;
pub mod http;
pub mod jobs;
pub mod keys;
pub mod launch;
pub mod leader;
pub mod log_output;
pub mod memory;
pub mod notify;
pub mod retry;
pub mod selector;
pub mod sqs;
pub mod telemetry;
pub mod template;
