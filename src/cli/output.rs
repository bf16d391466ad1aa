//! Printing: aligned tables and `Key: value` blocks for people, JSON and YAML for programs.

use std::io::Write;

use jiff::Timestamp;
use serde_json::Value;

use super::{args::OutputFormat, error::CliError};

/// Writes to standard output. A closed pipe (`| head`) ends the command quietly.
pub fn stdout(text: &str) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes()).and_then(|()| out.flush()).map_err(|e| match e.kind() {
        std::io::ErrorKind::BrokenPipe => CliError::BrokenPipe,
        _ => CliError::Unexpected(format!("cannot write to standard output: {e}")),
    })
}

/// Writes a line to standard error; a failure to do so has nowhere to be reported.
pub fn stderr(line: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

/// A value as pretty JSON or as YAML, ending with a newline.
pub fn encode(value: &Value, format: OutputFormat) -> Result<String, CliError> {
    match format {
        OutputFormat::Json => serde_json::to_string_pretty(value)
            .map(|s| s + "\n")
            .map_err(|e| CliError::Unexpected(format!("cannot encode JSON: {e}"))),
        OutputFormat::Yaml | OutputFormat::Table | OutputFormat::Wide | OutputFormat::Name => to_yaml(value),
    }
}

/// A JSON value as a YAML document.
pub fn to_yaml(value: &Value) -> Result<String, CliError> {
    let mut text =
        serde_saphyr::to_string(value).map_err(|e| CliError::Unexpected(format!("cannot encode YAML: {e}")))?;
    if !text.ends_with('\n') {
        text.push('\n');
    }
    Ok(text)
}

/// Columns aligned with spaces, a header row first. The last column is not padded.
#[derive(Debug, Clone)]
pub struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(headers: &[&str]) -> Self {
        Self { rows: vec![headers.iter().map(|h| h.to_string()).collect()] }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells.into_iter().map(|c| cell(&c)).collect());
    }

    /// Rows below the header.
    pub fn len(&self) -> usize {
        self.rows.len() - 1
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The table under a `title:` line, indented by two spaces, as `describe`-style output shows it.
    pub fn render_section(&self, title: &str) -> String {
        let mut text = format!("{title}:\n");
        for line in self.render().lines() {
            text.push_str(&format!("  {line}\n"));
        }
        text
    }

    pub fn render(&self) -> String {
        self.render_with(true)
    }

    /// The table, with or without its header row (`--no-headers`); the columns are as wide as
    /// the rows printed need.
    pub fn render_with(&self, headers: bool) -> String {
        let rows = if headers { &self.rows[..] } else { &self.rows[1..] };
        let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
        let widths: Vec<usize> = (0..columns)
            .map(|i| rows.iter().filter_map(|r| r.get(i)).map(|c| c.chars().count()).max().unwrap_or(0))
            .collect();
        let mut out = String::new();
        for row in rows {
            let mut line = String::new();
            for (i, text) in row.iter().enumerate() {
                if i > 0 {
                    line.push_str("   ");
                }
                line.push_str(text);
                if i + 1 < row.len() {
                    line.extend(std::iter::repeat_n(' ', widths[i].saturating_sub(text.chars().count())));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// `Key:  value` lines with the values aligned; empty values are left out.
pub fn fields(pairs: &[(&str, String)]) -> String {
    let pairs: Vec<&(&str, String)> = pairs.iter().filter(|(_, v)| !v.is_empty()).collect();
    let width = pairs.iter().map(|(k, _)| k.chars().count() + 1).max().unwrap_or(0);
    let mut out = String::new();
    for (key, value) in pairs {
        let label = format!("{key}:");
        out.push_str(&format!("{label:<width$}  {}\n", cell(value)));
    }
    out
}

/// A value made safe for one cell: control characters (newlines, escapes that would drive the
/// terminal) become spaces; an empty value shows as `-`.
pub fn cell(text: &str) -> String {
    let clean: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    if clean.trim().is_empty() { "-".into() } else { clean }
}

/// How long ago `then` was, as kubectl shows ages: `42s`, `7m`, `5h`, `3d`.
pub fn age(then: Timestamp, now: Timestamp) -> String {
    let seconds = now.duration_since(then).as_secs().max(0);
    match seconds {
        s if s < 120 => format!("{s}s"),
        s if s < 3 * 3600 => format!("{}m", s / 60),
        s if s < 48 * 3600 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

/// A timestamp to the second, with its age: `2026-11-02 10:04:05Z (7m ago)`.
pub fn when(at: Option<Timestamp>, now: Timestamp) -> String {
    at.map(|t| format!("{} ({} ago)", t.strftime("%Y-%m-%d %H:%M:%SZ"), age(t, now))).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_columns_and_leave_no_trailing_spaces() {
        let mut t = Table::new(&["NAME", "STATE", "AGE"]);
        t.row(vec!["fake-abc".into(), "running".into(), "5s".into()]);
        t.row(vec!["x".into(), String::new(), "12m".into()]);
        t.row(vec!["line\nbreak".into(), "ünï".into(), String::new()]);
        assert_eq!(t.len(), 3);
        assert_eq!(
            t.render(),
            "NAME         STATE     AGE\n\
             fake-abc     running   5s\n\
             x            -         12m\n\
             line break   ünï       -\n"
        );
        assert_eq!(Table::new(&["A", "B"]).render(), "A   B\n");
        assert_eq!(
            t.render_with(false),
            "fake-abc     running   5s\nx            -         12m\nline break   ünï       -\n"
        );
        assert_eq!(Table::new(&["A", "B"]).render_with(false), "");
        assert!(Table::new(&["A"]).is_empty());
    }

    #[test]
    fn fields_align_values_and_skip_empty_ones() {
        let text = fields(&[("Name", "j".into()), ("Idempotency key", String::new()), ("State", "failed".into())]);
        assert_eq!(text, "Name:   j\nState:  failed\n");
    }

    #[test]
    fn cells_cannot_carry_control_characters() {
        assert_eq!(cell("a\u{1b}[2Jb\tc"), "a [2Jb c");
        assert_eq!(cell(" "), "-");
    }

    #[test]
    fn ages_read_like_kubectls() {
        let now = Timestamp::from_second(1_000_000).expect("ts");
        let ago = |s: i64| age(Timestamp::from_second(1_000_000 - s).expect("ts"), now);
        assert_eq!(ago(-5), "0s");
        assert_eq!(ago(42), "42s");
        assert_eq!(ago(150), "2m");
        assert_eq!(ago(4 * 3600), "4h");
        assert_eq!(ago(3 * 86400), "3d");
        assert_eq!(when(None, now), "");
        assert_eq!(when(Timestamp::from_second(999_958).ok(), now), "1970-01-12 13:45:58Z (42s ago)");
    }

    #[test]
    fn yaml_round_trips_values_that_look_like_other_types() {
        let value = serde_json::json!({
            "strings": ["true", "no", "yes", "~", "null", "0", "1.5", "0x1F", "1e3", "", " lead", "trail ", "a: b",
                        "- x", "#c", "multi\nline\n", "$(params.x)", "'q'", "\"dq\"", "ünï", "@at", "*star", "&amp",
                        "!tag", "%pct", "{b}", "[s]", "x\ty", "---", "..."],
            "numbers": [0, -1, 1.5, 12345678901234_i64],
            "bools": [true, false],
            "null": null,
            "empty_map": {},
            "empty_list": [],
            "nested": {"a.b/c": {"k": [{"name": "main", "command": ["sh", "-c", "echo hi"]}]}},
        });
        let text = to_yaml(&value).expect("yaml");
        let back: Value = serde_saphyr::from_str(&text).expect("parses back");
        assert_eq!(back, value, "{text}");
        assert_eq!(
            encode(&value, OutputFormat::Json).ok().and_then(|j| serde_json::from_str::<Value>(&j).ok()),
            Some(value)
        );
    }
}
