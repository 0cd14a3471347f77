//! Why an import was refused: one error type for CSV and AWS JSON imports.

use std::fmt;

/// Why an import was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ImportErrorKind {
    /// The input is longer than [`MAX_IMPORT_BYTES`](super::MAX_IMPORT_BYTES) (CSV) or
    /// [`aws::MAX_JSON_BYTES`](super::aws::MAX_JSON_BYTES) (JSON).
    TooLarge,
    /// The input holds more than [`MAX_IMPORT_ROWS`](super::MAX_IMPORT_ROWS) keys.
    TooManyRows,
    /// A CSV row does not have as many fields as the header, or a document is not valid JSON.
    Syntax,
    /// The header lacks a required column (`Key` or `Name`).
    MissingColumn,
    /// A field's value is not allowed (key length or characters, name length, `Enabled`; in JSON
    /// a member of the wrong type, a missing `id`, a limit out of range).
    Invalid,
    /// A column is named twice, two rows or keys have the same key value, an id is repeated, or a
    /// key belongs to two plans of one stage.
    Duplicate,
    /// An API key has no `value`: it was exported without `--include-values`.
    MissingValue,
    /// A document names a plan or key that the other documents do not have.
    UnknownReference,
}

/// An import was refused. Names where (CSV: line and column; JSON: the document, the item by
/// its id and the field) and why; never contains a key value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{}", self.location(), self.0.reason)]
pub struct ImportError(Box<Inner>);

/// Boxed: the error stays one pointer wide in `Result`s.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Inner {
    kind: ImportErrorKind,
    document: Option<String>,
    line: Option<u64>,
    item: Option<String>,
    column: Option<&'static str>,
    field: Option<String>,
    reason: String,
}

impl ImportError {
    /// An error in a CSV input.
    pub(crate) fn new(
        kind: ImportErrorKind,
        line: Option<u64>,
        column: Option<&'static str>,
        reason: impl Into<String>,
    ) -> Self {
        Self(Box::new(Inner { kind, document: None, line, item: None, column, field: None, reason: reason.into() }))
    }

    /// An error in a JSON document: `item` is e.g. `plan "p1"`, `field` e.g. `quota.limit`.
    pub(crate) fn in_document(
        kind: ImportErrorKind,
        document: Option<&str>,
        item: Option<String>,
        field: Option<String>,
        reason: impl Into<String>,
    ) -> Self {
        let document = document.map(str::to_owned);
        Self(Box::new(Inner { kind, document, line: None, item, column: None, field, reason: reason.into() }))
    }

    pub(crate) fn at_line(mut self, line: u64) -> Self {
        self.0.line = Some(line);
        self
    }

    fn location(&self) -> String {
        let mut out = String::new();
        let mut part = |p: fmt::Arguments<'_>| {
            if !out.is_empty() {
                out.push_str(", ");
            }
            out.push_str(&p.to_string());
        };
        if let Some(d) = &self.0.document {
            part(format_args!("{d}"));
        }
        if let Some(l) = self.0.line {
            part(format_args!("line {l}"));
        }
        if let Some(i) = &self.0.item {
            part(format_args!("{i}"));
        }
        if let Some(c) = self.0.column {
            part(format_args!("column {c}"));
        }
        if let Some(f) = &self.0.field {
            part(format_args!("field {f}"));
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out
    }

    /// What kind of error this is.
    #[must_use]
    pub fn kind(&self) -> ImportErrorKind {
        self.0.kind
    }

    /// The JSON document the error is in, named after the command that prints it
    /// (`get-usage-plans`, `get-api-keys`, `get-usage-plan-keys --usage-plan-id p1`); `None` for CSV.
    #[must_use]
    pub fn document(&self) -> Option<&str> {
        self.0.document.as_deref()
    }

    /// The line of the offending row (1 for the header), if the error is about one row; in JSON,
    /// the line of a syntax error.
    #[must_use]
    pub fn line(&self) -> Option<u64> {
        self.0.line
    }

    /// The JSON item, by its id (`plan "p1"`, `key "k1"`) or its index (`items[3]`) when it has
    /// no id; `None` for CSV.
    #[must_use]
    pub fn item(&self) -> Option<&str> {
        self.0.item.as_deref()
    }

    /// The offending column, by its canonical name (`Name`, `Key`, `Description`, `Enabled`,
    /// `UsagePlanIds`, `CustomerId`), if the error is about one column.
    #[must_use]
    pub fn column(&self) -> Option<&str> {
        self.0.column
    }

    /// The offending JSON member, as a path inside the item (`quota.limit`,
    /// `apiStages[0].throttle."/pets/GET".burstLimit`).
    #[must_use]
    pub fn field(&self) -> Option<&str> {
        self.0.field.as_deref()
    }

    /// Why the input was refused.
    #[must_use]
    pub fn reason(&self) -> &str {
        &self.0.reason
    }
}
