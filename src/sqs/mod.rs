//! SQS sources: the dispatch consumer (one Job per message, deleted only once its Job exists)
//! and the scale poller (Jobs for visible messages, which the Jobs then consume).

pub mod dead_letter;
pub mod dispatch;
pub mod message;
pub mod scale;

use aws_config::{BehaviorVersion, Region};

use crate::config::SqsArgs;

/// An SQS client from the AWS default chain (environment, profile, web identity for IRSA,
/// container and instance roles), with the region and endpoint overrides of `args`.
pub async fn client(args: &SqsArgs) -> aws_sdk_sqs::Client {
    // A server that stops answering must not hang a call forever: an attempt may take the long
    // poll's wait plus a margin, then fails (and is retried by the loops).
    let timeouts = aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(std::time::Duration::from_secs(3))
        .operation_attempt_timeout(args.sqs_wait_time + std::time::Duration::from_secs(15))
        .build();
    let mut loader = aws_config::defaults(BehaviorVersion::latest()).timeout_config(timeouts);
    if let Some(region) = &args.sqs_region {
        loader = loader.region(Region::new(region.clone()));
    }
    if let Some(endpoint) = &args.sqs_endpoint {
        loader = loader.endpoint_url(endpoint);
    }
    if let (Some(id), Some(secret)) = (&args.sqs_access_key_id, &args.sqs_secret_access_key) {
        loader = loader.credentials_provider(aws_sdk_sqs::config::Credentials::new(id, secret, None, None, "flags"));
    }
    aws_sdk_sqs::Client::new(&loader.load().await)
}

/// A short description of an SDK error, with the service's error code when there is one.
pub fn describe<E, R>(error: &aws_sdk_sqs::error::SdkError<E, R>) -> String
where
    E: aws_sdk_sqs::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    use aws_sdk_sqs::error::SdkError;
    match error {
        SdkError::ServiceError(e) => {
            let err = e.err();
            format!("{}: {}", err.code().unwrap_or("error"), err.message().unwrap_or("no message"))
        }
        SdkError::DispatchFailure(e) => {
            format!("cannot reach SQS: {:?}", e.as_connector_error().map(|c| c.to_string()))
        }
        SdkError::TimeoutError(_) => "SQS did not answer in time".into(),
        other => other.to_string(),
    }
}
