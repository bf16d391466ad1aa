//! Job names, at most 63 characters, valid DNS labels. A keyed Job is `k-<hash>`, the hash of
//! (namespace, instance, caller, idempotency key) only: the same key from the same caller always
//! names the same Job, whatever it asks for, so Kubernetes' name uniqueness makes a key launch
//! once even when two replicas take it at once, and a different request under it meets the
//! first Job (409). An unkeyed Job is `<template>-<random>`.

use sha2::{Digest, Sha256};

/// Kubernetes limits the `job-name` label its controller puts on pods to 63 characters.
pub const MAX_NAME_LEN: usize = 63;
/// 12 base32 characters: 60 bits, so distinct keys do not meet by chance.
pub const KEYED_SUFFIX_LEN: usize = 12;
/// 10 base32 characters: 50 bits of randomness.
pub const RANDOM_SUFFIX_LEN: usize = 10;

const BASE32: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

fn base32(bytes: &[u8], len: usize) -> String {
    let mut out = String::with_capacity(len);
    let mut acc: u64 = 0;
    let mut bits = 0;
    for &b in bytes {
        acc = (acc << 8) | u64::from(b);
        bits += 8;
        while bits >= 5 && out.len() < len {
            bits -= 5;
            out.push(BASE32[((acc >> bits) & 31) as usize] as char);
        }
        if out.len() == len {
            break;
        }
    }
    out
}

/// Base32 characters of a keyed name's hash: 120 bits, so distinct keys do not meet by chance.
pub const KEYED_HASH_LEN: usize = 24;
/// The prefix of every keyed Job's name.
pub const KEYED_PREFIX: &str = "k-";

/// SHA-256 of `parts`, each preceded by its length so ("ab", "c") and ("a", "bc") differ.
fn hash_parts(parts: &[&str]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part.as_bytes());
    }
    hasher.finalize().into()
}

/// The name of a keyed Job: `k-<hash of namespace, instance, caller and key>`.
pub fn keyed_name(namespace: &str, instance: &str, caller: &str, key: &str) -> String {
    format!("{KEYED_PREFIX}{}", base32(&hash_parts(&[namespace, instance, caller, key]), KEYED_HASH_LEN))
}

/// The suffix keyed names had before they were scoped per caller (`<template>-<suffix>`, from
/// namespace, template and key). Kept for one release so a retry across the upgrade finds the
/// Job its first attempt made.
pub fn legacy_keyed_suffix(namespace: &str, template: &str, key: &str) -> String {
    base32(&hash_parts(&[namespace, template, key]), KEYED_SUFFIX_LEN)
}

/// 64 random bits from the operating system's generator.
pub fn random_u64() -> u64 {
    let mut bytes = [0u8; 8];
    // The OS generator failing is not something to recover from; fall back to the clock so a
    // name is still produced (a collision is then caught as AlreadyExists and retried).
    if getrandom::fill(&mut bytes).is_err() {
        let nanos =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        bytes = (nanos as u64).to_be_bytes();
    }
    u64::from_be_bytes(bytes)
}

/// A random suffix.
pub fn random_suffix() -> String {
    base32(&random_u64().to_be_bytes(), RANDOM_SUFFIX_LEN)
}

/// `<template>-<suffix>`: the template's name made DNS-safe and shortened to fit 63 characters.
pub fn job_name(template: &str, suffix: &str) -> String {
    let room = MAX_NAME_LEN.saturating_sub(suffix.len() + 1);
    let mut prefix: String = template
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' })
        .skip_while(|c| *c == '-')
        .take(room)
        .collect();
    while prefix.ends_with('-') {
        prefix.pop();
    }
    if prefix.is_empty() {
        prefix.push_str("job");
    }
    format!("{prefix}-{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_dns_label(s: &str) -> bool {
        !s.is_empty()
            && s.len() <= 63
            && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !s.starts_with('-')
            && !s.ends_with('-')
    }

    #[test]
    fn keyed_names_are_scoped_by_namespace_instance_caller_and_key_only() {
        let a = keyed_name("ns", "default", "alice", "key-1");
        assert_eq!(a, keyed_name("ns", "default", "alice", "key-1"), "deterministic");
        assert!(is_dns_label(&a) && a.starts_with(KEYED_PREFIX), "{a}");
        assert_eq!(a.len(), KEYED_PREFIX.len() + KEYED_HASH_LEN);
        for other in [
            keyed_name("ns", "default", "alice", "key-2"),
            keyed_name("ns2", "default", "alice", "key-1"),
            keyed_name("ns", "other", "alice", "key-1"),
            keyed_name("ns", "default", "bob", "key-1"),
        ] {
            assert_ne!(a, other);
        }
        assert_ne!(keyed_name("a", "bc", "x", "k"), keyed_name("ab", "c", "x", "k"), "parts do not run together");
    }

    #[test]
    fn legacy_suffixes_are_the_ones_earlier_releases_made() {
        // Computed by the release before callers scoped keys: a retry across the upgrade must
        // find the Job under exactly this name.
        assert_eq!(legacy_keyed_suffix("default", "greeting", "order-42"), "6tvhsljbxih3");
        assert_eq!(legacy_keyed_suffix("ns", "tpl", "key-1").len(), KEYED_SUFFIX_LEN);
        assert_ne!(legacy_keyed_suffix("ns", "tpl", "key-1"), legacy_keyed_suffix("ns", "tpl2", "key-1"));
    }

    #[test]
    fn random_suffixes_differ() {
        let a = random_suffix();
        assert_eq!(a.len(), RANDOM_SUFFIX_LEN);
        assert_ne!(a, random_suffix());
    }

    #[test]
    fn names_fit_63_characters_whatever_the_template_is_called() {
        for template in
            ["job-template", "x", &"very-long-template-name".repeat(10), "Weird_Name.v2", "--lead", "___", "ümlaut"]
        {
            for suffix in [legacy_keyed_suffix("ns", template, "k"), random_suffix()] {
                let name = job_name(template, &suffix);
                assert!(is_dns_label(&name), "{name:?} from {template:?}");
                assert!(name.ends_with(&format!("-{suffix}")));
            }
        }
        assert_eq!(job_name("job-template", "abc"), "job-template-abc");
        assert_eq!(job_name("Weird_Name.v2", "abc"), "weird-name-v2-abc");
        assert_eq!(job_name("___", "abc"), "job-abc");
        assert_eq!(job_name(&"a".repeat(100), "abc").len(), 63);
    }

    #[test]
    fn base32_uses_every_bit_in_order() {
        assert_eq!(base32(&[0xff, 0xff], 3), "777");
        assert_eq!(base32(&[0x00, 0x00], 3), "aaa");
        assert_eq!(base32(&[0b0000_1000], 1), "b");
    }
}
