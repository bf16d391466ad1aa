//! Which completion notices a launch may ask for (the server's allow-lists) and which a Job gets:
//! the request's own targets, checked, and the launcher's queue for every Job. Pure.

use regex::Regex;

use crate::{api::NotifyTargets, error::Error, template::render::quote_prefix};

/// The server's rules for notices.
#[derive(Debug, Clone, Default)]
pub struct NoticePolicy {
    /// `--notify-url-allow`, anchored to the whole URL; None: no webhook may be named.
    pub url_allow: Option<Regex>,
    /// `--notify-sqs-allow`, anchored; None: no reply queue may be named.
    pub sqs_allow: Option<Regex>,
    /// `--notify-sqs-queue-url`: every Job's notice also goes there.
    pub every_job_sqs: Option<String>,
}

/// Where one Job's notice goes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NoticeTargets {
    pub url: Option<String>,
    pub sqs: Vec<String>,
}

impl NoticeTargets {
    pub fn is_empty(&self) -> bool {
        self.url.is_none() && self.sqs.is_empty()
    }
}

/// Compiles an allow-list pattern so that it must match a whole URL.
pub fn anchored(pattern: &str) -> Result<Regex, regex::Error> {
    Regex::new(&format!("^(?:{pattern})$"))
}

impl NoticePolicy {
    /// The targets of a Job launched with `asked`; a target the allow-lists refuse is an error
    /// that names the flag.
    pub fn targets(&self, asked: Option<&NotifyTargets>) -> Result<NoticeTargets, Error> {
        let asked = asked.cloned().unwrap_or_default();
        if let Some(url) = &asked.url {
            check(url, self.url_allow.as_ref(), "notify.url", "--notify-url-allow")?;
        }
        if let Some(queue) = &asked.sqs_queue_url {
            check(queue, self.sqs_allow.as_ref(), "notify.sqsQueueUrl", "--notify-sqs-allow")?;
        }
        let mut sqs: Vec<String> = asked.sqs_queue_url.into_iter().collect();
        if let Some(every) = &self.every_job_sqs
            && !sqs.contains(every)
        {
            sqs.push(every.clone());
        }
        Ok(NoticeTargets { url: asked.url, sqs })
    }
}

fn check(target: &str, allow: Option<&Regex>, field: &str, flag: &str) -> Result<(), Error> {
    match allow {
        Some(allow) if allow.is_match(target) => Ok(()),
        Some(allow) => Err(Error::InvalidRequest(format!(
            "{field}: {} is not allowed: the launcher's {flag} is {:?}",
            quote_prefix(target),
            allow.as_str().strip_prefix("^(?:").and_then(|p| p.strip_suffix(")$")).unwrap_or(allow.as_str())
        ))),
        None => {
            Err(Error::InvalidRequest(format!("{field}: this launcher sends no such notices: its {flag} is not set")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> NoticePolicy {
        NoticePolicy {
            url_allow: anchored(r"https://hooks\.example\.com/.*").ok(),
            sqs_allow: None,
            every_job_sqs: Some("https://sqs/all".into()),
        }
    }

    #[test]
    fn allowed_targets_pass_and_every_job_gets_the_launchers_queue() {
        let asked = NotifyTargets { url: Some("https://hooks.example.com/a".into()), sqs_queue_url: None };
        let targets = policy().targets(Some(&asked)).expect("allowed");
        assert_eq!(targets, NoticeTargets { url: asked.url, sqs: vec!["https://sqs/all".into()] });
        assert_eq!(policy().targets(None).expect("none asked").sqs, vec!["https://sqs/all".to_string()]);
    }

    #[test]
    fn a_target_outside_the_allow_list_names_the_flag() {
        let evil = NotifyTargets { url: Some("https://hooks.example.com.evil/x".into()), sqs_queue_url: None };
        let error = policy().targets(Some(&evil)).expect_err("refused").to_string();
        assert!(error.contains("notify.url") && error.contains("--notify-url-allow"), "{error}");
        let queue = NotifyTargets { url: None, sqs_queue_url: Some("https://sqs/mine".into()) };
        let error = policy().targets(Some(&queue)).expect_err("no sqs allow-list").to_string();
        assert!(error.contains("--notify-sqs-allow") && error.contains("not set"), "{error}");
    }
}
