//! Problems found in a desired-state file, collected rather than thrown so
//! that `hybrid validate` reports all of them at once (Terraform's tfdiags).
//!
//! A diagnostic names the key (`pool[1].taints[0]`), carries the byte span of
//! the offending value when there is one, says what is wrong and how to fix
//! it. Rendering turns spans into `file:line:column` plus a source snippet.

use std::ops::Range;

use miette::{GraphicalReportHandler, GraphicalTheme, LabeledSpan, NamedSource, Severity as MSeverity};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Error,
    Warning,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    /// The key path as a user would write it: `cni.vni`, `pool[0].labels."app"`.
    pub key: String,
    pub message: String,
    pub help: Option<String>,
    pub span: Option<Range<usize>>,
}

/// Collects diagnostics while a file is read and checked.
#[derive(Debug, Default)]
pub struct Diagnostics {
    items: Vec<Diagnostic>,
}

impl Diagnostics {
    pub fn error(&mut self, key: impl Into<String>, span: Option<Range<usize>>, message: impl Into<String>) -> &mut Diagnostic {
        self.push(Severity::Error, key.into(), span, message.into())
    }

    pub fn warning(&mut self, key: impl Into<String>, span: Option<Range<usize>>, message: impl Into<String>) -> &mut Diagnostic {
        self.push(Severity::Warning, key.into(), span, message.into())
    }

    fn push(&mut self, severity: Severity, key: String, span: Option<Range<usize>>, message: String) -> &mut Diagnostic {
        self.items.push(Diagnostic { severity, key, message, help: None, span });
        self.items.last_mut().expect("just pushed")
    }

    /// True when `key` (or a key it belongs to) already has an error. Later
    /// checks skip such keys: a value that failed to parse would otherwise
    /// produce a second, confusing complaint about its placeholder.
    pub fn has_error_at(&self, key: &str) -> bool {
        self.items.iter().any(|d| {
            d.severity == Severity::Error
                && (d.key == key || key.starts_with(&format!("{}.", d.key)) || key.starts_with(&format!("{}[", d.key)))
        })
    }

    /// Like `has_error_at`, and also true when a key inside `key` has one:
    /// a warning about a list is moot while one of its items is wrong.
    pub fn has_error_within(&self, key: &str) -> bool {
        self.has_error_at(key)
            || self
                .items
                .iter()
                .any(|d| d.severity == Severity::Error && (d.key.starts_with(&format!("{key}.")) || d.key.starts_with(&format!("{key}["))))
    }

    pub fn has_errors(&self) -> bool {
        self.items.iter().any(|d| d.severity == Severity::Error)
    }

    pub fn items(&self) -> &[Diagnostic] {
        &self.items
    }

    pub fn into_vec(self) -> Vec<Diagnostic> {
        self.items
    }
}

impl Diagnostic {
    pub fn help(&mut self, help: impl Into<String>) -> &mut Self {
        self.help = Some(help.into());
        self
    }
}

/// 1-based line and column (in characters) of a byte offset.
pub fn line_col(source: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(source.len());
    let before = &source[..floor_char_boundary(source, offset)];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// Renders diagnostics for a terminal or a log: one `file:line:col: key:
/// message` headline each, then the source snippet and the help.
pub struct Renderer {
    handler: GraphicalReportHandler,
}

impl Renderer {
    pub fn new(color: bool) -> Self {
        let theme = if color { GraphicalTheme::unicode() } else { GraphicalTheme::unicode_nocolor() };
        // No wrapping: a headline must stay on one line for grep and editors'
        // problem matchers; terminals wrap long lines themselves.
        Self { handler: GraphicalReportHandler::new_themed(theme).with_width(usize::MAX) }
    }

    /// Like `render`, for a file edited by `--set` flags: a problem in a
    /// value a flag wrote is shown against that flag, not the edited text.
    pub fn render_in(&self, file_name: &str, source: &str, origins: &[super::overrides::Origin], diag: &Diagnostic) -> String {
        match diag.span.as_ref().and_then(|s| super::overrides::origin_of(origins, s)) {
            Some(o) => {
                let shown = Diagnostic { span: Some(o.in_flag.clone()), ..diag.clone() };
                let report = Report {
                    headline: format!("--set {}: {}: {}", o.flag, diag.key, diag.message),
                    diag: &shown,
                    source: NamedSource::new("--set", o.flag.clone()),
                };
                let mut out = String::new();
                if self.handler.render_report(&mut out, &report).is_err() {
                    out = report.headline.clone();
                }
                out
            }
            None => self.render(file_name, source, diag),
        }
    }

    pub fn render(&self, file_name: &str, source: &str, diag: &Diagnostic) -> String {
        let location = match &diag.span {
            Some(span) => {
                let (line, col) = line_col(source, span.start);
                format!("{file_name}:{line}:{col}")
            }
            None => file_name.to_string(),
        };
        let report = Report {
            headline: format!("{location}: {}: {}", diag.key, diag.message),
            diag,
            source: NamedSource::new(file_name, source.to_string()),
        };
        let mut out = String::new();
        if self.handler.render_report(&mut out, &report).is_err() {
            // Rendering into a String cannot fail in practice; keep the headline regardless.
            out = report.headline.clone();
        }
        out
    }
}

/// Adapter that lets miette draw one of our diagnostics.
struct Report<'a> {
    headline: String,
    diag: &'a Diagnostic,
    source: NamedSource<String>,
}

impl std::fmt::Debug for Report<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.headline)
    }
}

impl std::fmt::Display for Report<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.headline)
    }
}

impl std::error::Error for Report<'_> {}

impl miette::Diagnostic for Report<'_> {
    fn severity(&self) -> Option<MSeverity> {
        Some(match self.diag.severity {
            Severity::Error => MSeverity::Error,
            Severity::Warning => MSeverity::Warning,
        })
    }

    fn help<'b>(&'b self) -> Option<Box<dyn std::fmt::Display + 'b>> {
        self.diag.help.as_ref().map(|h| Box::new(h) as Box<dyn std::fmt::Display>)
    }

    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        self.diag.span.as_ref().map(|_| &self.source as &dyn miette::SourceCode)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        let span = self.diag.span.clone()?;
        let label = LabeledSpan::new_primary_with_span(Some(self.diag.key.clone()), span);
        Some(Box::new(std::iter::once(label)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_from_one_in_characters() {
        let src = "a = 1\nbé = \"x\"\n";
        assert_eq!(line_col(src, 0), (1, 1));
        assert_eq!(line_col(src, 6), (2, 1));
        // 'é' is two bytes but one column.
        assert_eq!(line_col(src, 11), (2, 5));
        assert_eq!(line_col(src, 999), (3, 1));
    }

    #[test]
    fn errors_under_a_key_suppress_later_checks_of_that_key() {
        let mut d = Diagnostics::default();
        d.error("pool[0]", None, "bad");
        assert!(d.has_error_at("pool[0].name"));
        assert!(d.has_error_at("pool[0]"));
        assert!(!d.has_error_at("pool[1].name"));
        assert!(!d.has_error_at("pool"));
    }

    #[test]
    fn rendering_shows_location_key_snippet_and_help() {
        let src = "[cni]\nvni = 1\n";
        let mut d = Diagnostics::default();
        d.error("cni.vni", Some(12..13), "is below 4096").help("set vni = 4096");
        let out = Renderer::new(false).render("dev.toml", src, &d.into_vec()[0]);
        assert!(out.contains("dev.toml:2:7: cni.vni: is below 4096"), "{out}");
        assert!(out.contains("vni = 1"), "{out}");
        assert!(out.contains("help: set vni = 4096"), "{out}");
    }
}
