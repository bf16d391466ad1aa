//! Kubernetes' own `$(VAR)` expansion of a container's command, args, env values and subPathExpr,
//! written from its rules, so tests can check what a process would really see:
//!
//! - `$$` becomes `$`;
//! - `$(NAME)` becomes NAME's value when the mapping knows it, and stays `$(NAME)` when not;
//! - a `$(` without a closing `)` stays as it is;
//! - a `$` before anything else stays, with that next byte (Kubernetes copies the byte as a
//!   character of its own, so a `$` right before a multi-byte character garbles it; escaped values
//!   never have one).
//!
//! Works on bytes, as Kubernetes does.

/// `input` after expansion, with `lookup` giving the variables that are defined.
pub fn expand(input: &str, lookup: impl Fn(&str) -> Option<String>) -> String {
    let bytes = input.as_bytes();
    let mut out: Vec<u8> = Vec::with_capacity(bytes.len());
    let mut checkpoint = 0;
    let mut cursor = 0;
    while cursor < bytes.len() {
        if bytes[cursor] == b'$' && cursor + 1 < bytes.len() {
            out.extend_from_slice(&bytes[checkpoint..cursor]);
            let rest = &bytes[cursor + 1..];
            let advance = match rest[0] {
                b'$' => {
                    out.push(b'$');
                    1
                }
                b'(' => match rest.iter().position(|&b| b == b')') {
                    Some(close) => {
                        let name = String::from_utf8_lossy(&rest[1..close]).into_owned();
                        match lookup(&name) {
                            Some(value) => out.extend_from_slice(value.as_bytes()),
                            None => out.extend_from_slice(format!("$({name})").as_bytes()),
                        }
                        close + 1
                    }
                    None => {
                        out.extend_from_slice(b"$(");
                        1
                    }
                },
                other => {
                    out.push(b'$');
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(char::from(other).encode_utf8(&mut buf).as_bytes());
                    1
                }
            };
            cursor += advance;
            checkpoint = cursor + 1;
        }
        cursor += 1;
    }
    out.extend_from_slice(&bytes[checkpoint.min(bytes.len())..]);
    String::from_utf8_lossy(&out).into_owned()
}

/// Expansion as a container with the variables `defined` (name, value) would do it.
pub fn expand_with(input: &str, defined: &[(&str, &str)]) -> String {
    expand(input, |name| defined.iter().find(|(n, _)| *n == name).map(|(_, v)| v.to_string()))
}
