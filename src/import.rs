//! Importing API keys from CSV in API Gateway's `ImportApiKeys` format; usage plans and keys from
//! the AWS CLI's JSON in [`aws`].
//!
//! The file API Gateway imports (`aws apigateway import-api-keys --format csv`) reads here too,
//! so keys can move off API Gateway, or between stores, as they are:
//!
//! ```text
//! Name,key,description,Enabled,usageplanIds
//! MyFirstApiKey,apikeyuniqueForMyFirstApiKey,A key for my first api key,true,c7y23b
//! MySecondApiKey,apikeyuniqueForMySecondApiKey,,false,"c7y23b,glvrsr"
//! ```
//!
//! - The first line is the header. Column names are matched ignoring case, spaces, `_` and `-`
//!   (`usageplanIds`, `UsagePlanIds` and `usage_plan_ids` are one column), in any order; unknown
//!   columns are ignored. `Key` and `Name` are required, as API Gateway requires them; `Description`,
//!   `Enabled`, `UsagePlanIds` and `CustomerId` are optional. A column named twice is an error.
//! - `Key`: the secret value, 20 to 128 visible ASCII characters ([`KeySecret::new`]). Two rows with
//!   the same value are an error (API Gateway would let the later row overwrite the earlier one).
//! - `Name`: at most [`MAX_NAME_LEN`] characters; empty means the key's id
//!   (see [`ImportedKey::into_api_key`]).
//! - `Enabled`: `true` or `false` in any case; empty (or no column) means `true`, API Gateway's default.
//! - `UsagePlanIds`: plan ids separated by commas (inside a double-quoted field: `"c7y23b,glvrsr"`),
//!   semicolons or whitespace; ids in single quotes (`'c7y23b'`) lose them; repeats count once;
//!   empty means no plan. API Gateway also accepts a comma list in single quotes; standard CSV
//!   does not, and such a row has more fields than the header, which is an error saying so.
//! - `Description` and `CustomerId`: empty means none.
//! - Fields are trimmed; double quotes quote a field (`""` inside one is a quote); lines end in LF or
//!   CRLF; a UTF-8 byte order mark at the start is skipped; empty lines, and rows whose fields are
//!   all empty (spreadsheets write them), are skipped. Every other row must have as many fields as
//!   the header. A header alone gives no keys; an empty input has no `Key` column and is an error.
//! - Input is bounded: at most [`MAX_IMPORT_BYTES`] bytes and [`MAX_IMPORT_ROWS`] keys.
//!
//! Errors ([`ImportError`]) name the line and the column and never contain a field's value: a
//! misplaced column can put a key value in any of them.
//!
//! ```
//! use tower_usage_plans::{import, Config, InMemoryKeyStore};
//!
//! let csv = "\
//! Name,key,description,Enabled,usageplanIds
//! MyFirstApiKey,apikeyuniqueForMyFirstApiKey,A key for my first api key,true,c7y23b
//! ";
//! let keys = import::parse_api_keys_csv(csv)?;
//! assert_eq!(keys[0].plan_ids, ["c7y23b"]);
//!
//! let config = Config::from_toml_str(r#"
//!     [stage]
//!     api = "petstore"
//!     name = "prod"
//!
//!     [[plans]]
//!     id = "c7y23b"
//!     stages = [{ api = "petstore", stage = "prod" }]
//! "#)?;
//! let store = InMemoryKeyStore::from_config(config.with_imported_keys(keys)?);
//! let record = store.get("apikeyuniqueForMyFirstApiKey").unwrap();
//! assert_eq!(record.key().name(), "MyFirstApiKey");
//! assert_eq!(record.plans()[0].id(), "c7y23b");
//!
//! let err = import::parse_api_keys_csv("Name,Key\nshort,tooshort\n").unwrap_err();
//! assert_eq!(err.to_string(), "line 2, column Key: must be 20 to 128 characters long, got 8");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use crate::model::{ApiKey, KeySecret};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

pub mod aws;
mod error;

pub use error::{ImportError, ImportErrorKind};

/// Largest input [`parse_api_keys_csv`] accepts: 1 MiB.
pub const MAX_IMPORT_BYTES: usize = 1 << 20;

/// Most keys one input may hold: 10,000, API Gateway's default quota of API keys per region.
pub const MAX_IMPORT_ROWS: usize = 10_000;

/// Longest `Name` accepted, in characters (API Gateway's limit).
pub const MAX_NAME_LEN: usize = 1024;

/// One key read from a CSV row, before it has an id.
///
/// Fields are public so that a caller can adjust a key before adding it, e.g. map API Gateway's
/// plan ids onto its own. `Debug` never shows the value.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ImportedKey {
    /// The line the row starts on, counting from 1 (the header is line 1 in most files).
    pub line: u64,
    /// `Name`; `None` when empty.
    pub name: Option<String>,
    /// `Key`: the secret value.
    pub value: KeySecret,
    /// `Description`; `None` when empty or absent.
    pub description: Option<String>,
    /// `Enabled`; `true` when empty or absent.
    pub enabled: bool,
    /// `UsagePlanIds`, in file order, without repeats.
    pub plan_ids: Vec<String>,
    /// `CustomerId`; `None` when empty or absent.
    pub customer_id: Option<String>,
}

impl ImportedKey {
    /// The key's secret and its record under id `id`. A key without a name is named by its id.
    ///
    /// ```
    /// use tower_usage_plans::import::parse_api_keys_csv;
    /// let key = parse_api_keys_csv("key,name\nacme-0123456789abcdefghij,\n").unwrap().remove(0);
    /// let (secret, record) = key.into_api_key("k1");
    /// assert_eq!(secret.expose(), "acme-0123456789abcdefghij");
    /// assert_eq!(record.name(), "k1");
    /// assert!(record.is_enabled());
    /// ```
    pub fn into_api_key(self, id: impl Into<Arc<str>>) -> (KeySecret, ApiKey) {
        let mut key = ApiKey::new(id).enabled(self.enabled);
        if let Some(name) = self.name {
            key = key.with_name(name);
        }
        if let Some(description) = self.description {
            key = key.with_description(description);
        }
        if let Some(customer) = self.customer_id {
            key = key.with_customer_id(customer);
        }
        for plan in self.plan_ids {
            key = key.plan(plan);
        }
        (self.value, key)
    }
}

/// Reads API keys from CSV text in API Gateway's `ImportApiKeys` format (see the
/// [module documentation](self) for the format and the choices made where it is loose).
///
/// The keys come in file order; none has an id yet: [`Config::with_imported_keys`] gives them one,
/// or [`ImportedKey::into_api_key`] takes one.
///
/// [`Config::with_imported_keys`]: crate::Config::with_imported_keys
pub fn parse_api_keys_csv(text: &str) -> Result<Vec<ImportedKey>, ImportError> {
    if text.len() > MAX_IMPORT_BYTES {
        let reason = format!("the input has {} bytes, more than the {MAX_IMPORT_BYTES} accepted", text.len());
        return Err(ImportError::new(ImportErrorKind::TooLarge, None, None, reason));
    }
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut reader = csv::ReaderBuilder::new().flexible(false).trim(csv::Trim::All).from_reader(text.as_bytes());
    let mut lines = Lines { text: text.as_bytes(), byte: 0, line: 1 };
    let header = reader.headers().map_err(|e| csv_error(&e, &mut lines))?;
    let columns = Columns::new(header, lines.at(header.position()))?;

    let mut keys: Vec<ImportedKey> = Vec::new();
    let mut first_line: HashMap<KeySecret, u64> = HashMap::new();
    let mut record = csv::StringRecord::new();
    while reader.read_record(&mut record).map_err(|e| csv_error(&e, &mut lines))? {
        if record.iter().all(str::is_empty) {
            continue;
        }
        let line = lines.at(record.position());
        if keys.len() == MAX_IMPORT_ROWS {
            let reason = format!("more than {MAX_IMPORT_ROWS} keys; split the file");
            return Err(ImportError::new(ImportErrorKind::TooManyRows, Some(line), None, reason));
        }
        let key = columns.read(&record, line)?;
        if let Some(first) = first_line.insert(key.value.clone(), line) {
            let reason = format!("the same value as line {first}");
            return Err(ImportError::new(ImportErrorKind::Duplicate, Some(line), Some(COLUMNS[KEY]), reason));
        }
        keys.push(key);
    }
    Ok(keys)
}

// Indexes into `COLUMNS`, the canonical column names.
const NAME: usize = 0;
const KEY: usize = 1;
const DESCRIPTION: usize = 2;
const ENABLED: usize = 3;
const PLANS: usize = 4;
const CUSTOMER: usize = 5;
const COLUMNS: [&str; 6] = ["Name", "Key", "Description", "Enabled", "UsagePlanIds", "CustomerId"];

/// Where each known column is in a row.
#[derive(Debug)]
struct Columns {
    /// Indexed like `COLUMNS`.
    at: [Option<usize>; 6],
}

impl Columns {
    fn new(header: &csv::StringRecord, line: u64) -> Result<Self, ImportError> {
        let mut at = [None; 6];
        for (i, title) in header.iter().enumerate() {
            let normalized: String =
                title.chars().filter(|c| !matches!(c, ' ' | '_' | '-')).flat_map(char::to_lowercase).collect();
            let Some(k) = COLUMNS.iter().position(|name| name.eq_ignore_ascii_case(&normalized)) else {
                continue;
            };
            if at[k].replace(i).is_some() {
                let reason = "appears twice in the header (names are matched ignoring case, spaces, _ and -)";
                return Err(ImportError::new(ImportErrorKind::Duplicate, Some(line), Some(COLUMNS[k]), reason));
            }
        }
        for required in [KEY, NAME] {
            if at[required].is_none() {
                let reason = "missing from the header (the first line must name the columns)";
                return Err(ImportError::new(
                    ImportErrorKind::MissingColumn,
                    Some(line),
                    Some(COLUMNS[required]),
                    reason,
                ));
            }
        }
        Ok(Self { at })
    }

    /// The trimmed field of `column` in `record`; empty when the file has no such column.
    fn get<'r>(&self, record: &'r csv::StringRecord, column: usize) -> &'r str {
        self.at[column].and_then(|i| record.get(i)).unwrap_or_default()
    }

    fn read(&self, record: &csv::StringRecord, line: u64) -> Result<ImportedKey, ImportError> {
        let invalid = |column: usize, reason: &str| {
            ImportError::new(ImportErrorKind::Invalid, Some(line), Some(COLUMNS[column]), reason)
        };
        let value = KeySecret::new(self.get(record, KEY)).map_err(|e| invalid(KEY, e.reason()))?;
        let name = self.get(record, NAME);
        let chars = name.chars().count();
        if chars > MAX_NAME_LEN {
            return Err(invalid(NAME, &format!("must be at most {MAX_NAME_LEN} characters long, got {chars}")));
        }
        let enabled = match self.get(record, ENABLED) {
            "" => true,
            v if v.eq_ignore_ascii_case("true") => true,
            v if v.eq_ignore_ascii_case("false") => false,
            _ => return Err(invalid(ENABLED, "must be true or false (any case), or empty for true")),
        };
        let nonempty = |s: &str| (!s.is_empty()).then(|| s.to_owned());
        Ok(ImportedKey {
            line,
            name: nonempty(name),
            value,
            description: nonempty(self.get(record, DESCRIPTION)),
            enabled,
            plan_ids: plan_ids(self.get(record, PLANS)),
            customer_id: nonempty(self.get(record, CUSTOMER)),
        })
    }
}

/// Splits a `UsagePlanIds` field on commas, semicolons and whitespace; drops single quotes around
/// ids, empty ids and repeats.
fn plan_ids(field: &str) -> Vec<String> {
    let mut seen = HashSet::new();
    field
        .split(|c: char| c == ',' || c == ';' || c.is_whitespace())
        .map(|id| id.trim_matches('\''))
        .filter(|id| !id.is_empty() && seen.insert(*id))
        .map(str::to_owned)
        .collect()
}

/// Line numbers of rows. csv's own `Position::line` does not count the empty lines it skips, so
/// lines are counted here from byte offsets, once over the text.
#[derive(Debug)]
struct Lines<'t> {
    text: &'t [u8],
    /// Where `line` was counted up to.
    byte: usize,
    line: u64,
}

impl Lines<'_> {
    /// The line on which the row read from `pos` starts. The reader puts a row's position where the
    /// previous row ended, before any empty lines it then skips.
    fn at(&mut self, pos: Option<&csv::Position>) -> u64 {
        let text = self.text;
        let mut start = pos.map_or(self.byte, |p| usize::try_from(p.byte()).unwrap_or(usize::MAX)).min(text.len());
        while start < text.len() && matches!(text[start], b'\r' | b'\n') {
            start += 1;
        }
        if start < self.byte {
            (self.byte, self.line) = (0, 1);
        }
        let span = &text[self.byte..start];
        // A line ends at LF, or at a CR not followed by LF (csv accepts both).
        let breaks =
            span.iter().enumerate().filter(|&(i, b)| *b == b'\n' || (*b == b'\r' && span.get(i + 1) != Some(&b'\n')));
        self.line += breaks.count() as u64;
        self.byte = start;
        self.line
    }
}

fn csv_error(e: &csv::Error, lines: &mut Lines<'_>) -> ImportError {
    let line = Some(lines.at(e.position()));
    let reason = match e.kind() {
        csv::ErrorKind::UnequalLengths { expected_len, len, .. } => {
            let hint =
                if len > expected_len { "; a field containing commas must be in double quotes (\"a,b\")" } else { "" };
            format!("has {len} fields but the header has {expected_len}{hint}")
        }
        // The other kinds (I/O, invalid UTF-8, serde) cannot arise from a `&str` read as records;
        // their messages are not repeated in case they quote the input.
        _ => "is not valid CSV".to_owned(),
    };
    ImportError::new(ImportErrorKind::Syntax, line, None, reason)
}

#[cfg(test)]
mod tests;
