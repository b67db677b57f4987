//! Diagnostics for rule files: every problem carries its file, byte span, message, label
//! and an optional hint, and renders as a source snippet with a caret through
//! codespan-reporting, the same way compilers print errors.

use super::tree::Span;
use codespan_reporting::diagnostic::{Diagnostic as Report, Label};
use codespan_reporting::files::{Files, SimpleFiles};
use codespan_reporting::term;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Warning,
    Error,
}

/// One problem in one rule file.
#[derive(Debug, Clone)]
pub struct Diagnostic {
    pub severity: Severity,
    pub file: usize,
    pub span: Span,
    pub message: String,
    pub label: String,
    pub help: Option<String>,
}

impl Diagnostic {
    pub fn error(file: usize, span: Span, message: impl Into<String>) -> Diagnostic {
        Diagnostic { severity: Severity::Error, file, span, message: message.into(), label: String::new(), help: None }
    }
    pub fn warning(file: usize, span: Span, message: impl Into<String>) -> Diagnostic {
        Diagnostic { severity: Severity::Warning, ..Diagnostic::error(file, span, message) }
    }
    pub fn label(mut self, label: impl Into<String>) -> Diagnostic {
        self.label = label.into();
        self
    }
    pub fn help(mut self, help: impl Into<String>) -> Diagnostic {
        self.help = Some(help.into());
        self
    }
}

/// The text of every rule file read, so diagnostics can quote it.
#[derive(Default)]
pub struct Sources {
    files: SimpleFiles<String, String>,
}

impl Sources {
    pub fn add(&mut self, name: String, text: String) -> usize {
        self.files.add(name, text)
    }

    pub fn name(&self, file: usize) -> String {
        self.files.get(file).map(|f| f.name().clone()).unwrap_or_default()
    }

    pub fn text(&self, file: usize) -> &str {
        self.files.get(file).map(|f| f.source().as_str()).unwrap_or("")
    }

    /// 1-based line and column of a byte offset.
    pub fn line_col(&self, file: usize, offset: usize) -> (usize, usize) {
        let line = self.files.line_index(file, offset).unwrap_or(0);
        let col = self.files.column_number(file, line, offset).unwrap_or(1);
        (line + 1, col)
    }

    /// The full report: snippet, caret, label and hint.
    pub fn render(&self, d: &Diagnostic) -> String {
        let report = match d.severity {
            Severity::Error => Report::error(),
            Severity::Warning => Report::warning(),
        }
        .with_message(&d.message)
        .with_labels(vec![Label::primary(d.file, d.span.clone()).with_message(&d.label)])
        .with_notes(d.help.iter().map(|h| format!("help: {h}")).collect());
        let config = term::Config::default();
        term::emit_into_string(&config, &self.files, &report).unwrap_or_else(|_| self.one_line(d))
    }

    /// `file:line:col: error: message`, for logs.
    pub fn one_line(&self, d: &Diagnostic) -> String {
        let (line, col) = self.line_col(d.file, d.span.start);
        let sev = match d.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        let help = d.help.as_deref().map(|h| format!(" (help: {h})")).unwrap_or_default();
        format!("{}:{line}:{col}: {sev}: {}{help}", self.name(d.file), d.message)
    }
}

pub use crate::domain::did_you_mean;
