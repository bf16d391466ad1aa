//! The table: one row per figure, each the median of its runs with the spread (min–max); printed,
//! written into docs/benchmarks.md between markers, and as JSON under target/bench/.

use std::fmt::Write as _;

use serde_json::{Value, json};

use crate::stats;

#[derive(Debug, Clone, Copy)]
pub enum Goal {
    AtLeast(f64),
    AtMost(f64),
}

#[derive(Debug, Clone)]
pub struct Row {
    pub section: &'static str,
    pub figure: String,
    pub unit: &'static str,
    pub runs: Vec<f64>,
    pub goal: Option<Goal>,
}

impl Row {
    pub fn new(section: &'static str, figure: impl Into<String>, unit: &'static str, runs: Vec<f64>) -> Self {
        Self { section, figure: figure.into(), unit, runs, goal: None }
    }

    pub fn goal(mut self, goal: Goal) -> Self {
        self.goal = Some(goal);
        self
    }

    pub fn median(&self) -> f64 {
        stats::median(&self.runs)
    }

    /// Whether the median meets the goal.
    pub fn met(&self) -> Option<bool> {
        let m = self.median();
        self.goal.map(|g| match g {
            Goal::AtLeast(x) => m >= x,
            Goal::AtMost(x) => m <= x,
        })
    }

    fn target_text(&self) -> String {
        match self.goal {
            None => String::new(),
            Some(Goal::AtLeast(x)) => format!("≥ {}", fmt_value(x, self.unit)),
            Some(Goal::AtMost(x)) => format!("≤ {}", fmt_value(x, self.unit)),
        }
    }

    fn verdict(&self) -> &'static str {
        match self.met() {
            None => "",
            Some(true) => "met",
            Some(false) => "**missed**",
        }
    }
}

/// A value with its unit, rounded to what is meaningful.
pub fn fmt_value(v: f64, unit: &str) -> String {
    if !v.is_finite() {
        return "n/a".into();
    }
    match unit {
        "%" => format!("{:.0} %", v * 100.0),
        "ms" => format!("{} ms", round(v)),
        "s" => format!("{:.2} s", v),
        "MiB" => format!("{:.1} MiB", v),
        "" => round(v),
        "count" => format!("{v:.0}"),
        other => format!("{} {other}", round(v)),
    }
}

fn round(v: f64) -> String {
    let a = v.abs();
    if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn spread(row: &Row) -> String {
    if row.runs.len() < 2 {
        return format!("({} run)", row.runs.len());
    }
    let unit = if row.unit == "%" { "%" } else { "" };
    let (lo, hi) = (stats::min(&row.runs), stats::max(&row.runs));
    if unit == "%" {
        format!("{:.0}–{:.0} %", lo * 100.0, hi * 100.0)
    } else {
        format!("{}–{}", round(lo), round(hi))
    }
}

/// The table as markdown.
pub fn markdown_table(rows: &[Row]) -> String {
    let mut out =
        String::from("| | figure | median | spread (min–max) | runs | target | |\n|---|---|---|---|---|---|---|\n");
    let mut last = "";
    for row in rows {
        let section = if row.section != last { row.section } else { "" };
        last = row.section;
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} |",
            section,
            row.figure,
            fmt_value(row.median(), row.unit),
            spread(row),
            row.runs.len(),
            row.target_text(),
            row.verdict()
        );
    }
    out
}

/// The table for a terminal: fixed-width columns.
pub fn text_table(rows: &[Row]) -> String {
    let cells: Vec<[String; 6]> = rows
        .iter()
        .map(|r| {
            [
                format!("{}: {}", r.section, r.figure),
                fmt_value(r.median(), r.unit),
                spread(r),
                r.runs.len().to_string(),
                r.target_text(),
                r.verdict().replace('*', ""),
            ]
        })
        .collect();
    let header = ["figure", "median", "spread", "runs", "target", ""].map(String::from);
    let mut widths = [0usize; 6];
    for row in std::iter::once(&header).chain(cells.iter()) {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(&header).chain(cells.iter()) {
        let line: Vec<String> =
            row.iter().zip(widths).map(|(c, w)| format!("{c}{}", " ".repeat(w - c.chars().count()))).collect();
        let _ = writeln!(out, "{}", line.join("  ").trim_end());
    }
    out
}

pub fn rows_json(rows: &[Row]) -> Value {
    rows.iter()
        .map(|r| {
            json!({
                "section": r.section,
                "figure": r.figure,
                "unit": r.unit,
                "median": r.median(),
                "min": stats::min(&r.runs),
                "max": stats::max(&r.runs),
                "runs": r.runs,
                "target": r.target_text(),
                "met": r.met(),
            })
        })
        .collect()
}

pub const BEGIN: &str = "<!-- bench:begin (written by `make bench`; edit outside these markers) -->";
pub const END: &str = "<!-- bench:end -->";

/// Replaces what lies between the markers in `doc` with `generated`; a document without them
/// gets them appended.
pub fn splice(doc: &str, generated: &str) -> String {
    match (doc.find(BEGIN), doc.find(END)) {
        (Some(b), Some(e)) if b < e => {
            format!("{}{BEGIN}\n{generated}{}", &doc[..b], &doc[e..])
        }
        _ => format!("{doc}\n{BEGIN}\n{generated}{END}\n"),
    }
}
