//! One line of the results table, and the table.

use std::fmt::Write as _;

/// What a figure is held to.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Target {
    /// The figure must be at least this.
    AtLeast(f64),
    /// The figure must be at most this.
    AtMost(f64),
    /// The ratio (figure / reference) must be at least this.
    RatioAtLeast(f64),
    /// The ratio must be at most this.
    RatioAtMost(f64),
    /// Shown for comparison only.
    None,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub benchmark: String,
    pub figure: f64,
    pub unit: &'static str,
    /// The reference measured in the same run (or a published constant), with its name.
    pub reference: Option<(f64, String)>,
    pub target: Target,
}

impl Row {
    pub fn new(benchmark: impl Into<String>, figure: f64, unit: &'static str) -> Self {
        Self {
            benchmark: benchmark.into(),
            figure,
            unit,
            reference: None,
            target: Target::None,
        }
    }

    #[must_use]
    pub fn reference(mut self, value: f64, what: impl Into<String>) -> Self {
        self.reference = Some((value, what.into()));
        self
    }

    #[must_use]
    pub fn target(mut self, target: Target) -> Self {
        self.target = target;
        self
    }

    pub fn ratio(&self) -> Option<f64> {
        self.reference
            .as_ref()
            .filter(|(r, _)| *r > 0.0)
            .map(|(r, _)| self.figure / r)
    }

    /// Whether the target is met; `None` when there is none (or no reference for a ratio).
    pub fn met(&self) -> Option<bool> {
        match self.target {
            Target::AtLeast(t) => Some(self.figure >= t),
            Target::AtMost(t) => Some(self.figure <= t),
            Target::RatioAtLeast(t) => self.ratio().map(|r| r >= t),
            Target::RatioAtMost(t) => self.ratio().map(|r| r <= t),
            Target::None => None,
        }
    }

    fn target_text(&self) -> String {
        match self.target {
            Target::AtLeast(t) => format!(">= {} {}", num(t), self.unit),
            Target::AtMost(t) => format!("<= {} {}", num(t), self.unit),
            Target::RatioAtLeast(t) => format!("ratio >= {t:.2}"),
            Target::RatioAtMost(t) => format!("ratio <= {t:.2}"),
            Target::None => "-".into(),
        }
    }
}

/// A number with a sensible number of digits for its size.
pub fn num(v: f64) -> String {
    match v.abs() {
        a if a >= 100.0 => format!("{v:.0}"),
        a if a >= 10.0 => format!("{v:.1}"),
        a if a >= 1.0 => format!("{v:.2}"),
        _ => format!("{v:.3}"),
    }
}

/// The rows as a Markdown table (it reads as well in a terminal as in the README).
pub fn table(rows: &[Row]) -> String {
    let mut out = String::from(
        "| benchmark | figure | reference (same run) | ratio | target | met |\n|---|---|---|---|---|---|\n",
    );
    for r in rows {
        let reference = r.reference.as_ref().map_or_else(
            || "-".into(),
            |(v, what)| format!("{} {} ({what})", num(*v), r.unit),
        );
        let ratio = r.ratio().map_or_else(|| "-".into(), |x| format!("{x:.2}"));
        let met = match r.met() {
            Some(true) => "yes",
            Some(false) => "NO",
            None => "-",
        };
        let _ = writeln!(
            out,
            "| {} | {} {} | {reference} | {ratio} | {} | {met} |",
            r.benchmark,
            num(r.figure),
            r.unit,
            r.target_text()
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_on_figures_and_ratios() {
        let r = Row::new("x", 50.0, "jobs/s").target(Target::AtLeast(40.0));
        assert_eq!(r.met(), Some(true));
        let r = Row::new("x", 50.0, "ms").target(Target::AtMost(40.0));
        assert_eq!(r.met(), Some(false));
        let r = Row::new("x", 90.0, "MB/s")
            .reference(100.0, "file")
            .target(Target::RatioAtLeast(0.9));
        assert_eq!(r.ratio(), Some(0.9));
        assert_eq!(r.met(), Some(true));
        let r = Row::new("x", 1.0, "s").target(Target::RatioAtMost(1.2));
        assert_eq!(r.met(), None, "no reference, no verdict");
        let text = table(&[r]);
        assert!(
            text.contains("| x | 1.00 s | - | - | ratio <= 1.20 | - |"),
            "{text}"
        );
    }
}
