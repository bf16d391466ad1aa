//! Webhook notices: the final JobView POSTed as JSON, signed so the receiver can check it came
//! from this launcher and is fresh.
//!
//! `X-Job-Launcher-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`, keyed by
//! the content of `--notify-secret-file` without its trailing newline; a receiver recomputes it
//! and rejects an old `t` (no replay). `X-Job-Launcher-Delivery: <the Job's UID>`, the same on
//! every retry, lets it drop duplicates.

use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use super::attempt::Attempt;
use crate::api::{DELIVERY_HEADER, SIGNATURE_HEADER};

/// How long one delivery attempt may take.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// The signature header's value for `body` sent at `unix_seconds`.
pub fn signature(secret: &[u8], unix_seconds: i64, body: &str) -> String {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret).unwrap_or_else(|_| {
        // HMAC takes keys of any length; this cannot fail.
        <Hmac<Sha256> as KeyInit>::new_from_slice(b"").expect("an empty HMAC key")
    });
    mac.update(format!("{unix_seconds}.{body}").as_bytes());
    let hex: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
    format!("t={unix_seconds},v1={hex}")
}

/// What an HTTP answer means for a notice.
pub fn classify(status: u16) -> Attempt {
    match status {
        200..=299 => Attempt::Delivered,
        408 | 429 | 500..=599 => Attempt::Retry(format!("answered {status}")),
        other => Attempt::Refused(format!("answered {other}")),
    }
}

/// Posts notices to webhooks.
pub struct Webhook {
    http: reqwest::Client,
    /// None: no --notify-secret-file; a notice asked for under an earlier configuration is then
    /// refused rather than sent unsigned.
    secret: Option<Vec<u8>>,
}

impl Webhook {
    /// A poster signing with `secret`. Redirects are not followed: a notice goes only where the
    /// allow-list let it.
    pub fn new(secret: Option<Vec<u8>>) -> Result<Self, reqwest::Error> {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let http = reqwest::Client::builder()
            .timeout(ATTEMPT_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("kube-job-launcher/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self { http, secret })
    }

    pub async fn post(&self, url: &str, body: &str, delivery: &str) -> Attempt {
        let Some(secret) = &self.secret else {
            return Attempt::Refused("no --notify-secret-file to sign with".into());
        };
        let now = jiff::Timestamp::now().as_second();
        let sent = self
            .http
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(SIGNATURE_HEADER, signature(secret, now, body))
            .header(DELIVERY_HEADER, delivery)
            .body(body.to_string())
            .send()
            .await;
        match sent {
            Ok(response) => classify(response.status().as_u16()),
            Err(error) => Attempt::Retry(error.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_the_hmac_of_time_and_body() {
        // RFC 4231 test case 2's key and a body of our own, computed independently with
        // `printf '%s' '1700000000.{"a":1}' | openssl dgst -sha256 -hmac Jefe`.
        assert_eq!(
            signature(b"Jefe", 1_700_000_000, r#"{"a":1}"#),
            "t=1700000000,v1=fa5f6481efc59da48b19c9dc10196c9953e5651f8304b3a318b6b87d70272e0a"
        );
        assert_ne!(signature(b"Jefe", 1_700_000_001, r#"{"a":1}"#), signature(b"Jefe", 1_700_000_000, r#"{"a":1}"#));
    }

    #[test]
    fn answers_that_may_change_are_retried_and_refusals_are_final() {
        assert_eq!(classify(204), Attempt::Delivered);
        for status in [408, 429, 500, 503] {
            assert!(matches!(classify(status), Attempt::Retry(_)), "{status}");
        }
        for status in [301, 400, 401, 404, 410] {
            assert!(matches!(classify(status), Attempt::Refused(_)), "{status}");
        }
    }
}
