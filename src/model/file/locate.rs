//! Where a field is in the text read: field paths (`plans[0].stages[1].methods."/pets/GET"`)
//! turned into a line and column of a TOML or JSON text, for errors found after parsing.

use toml::de::{DeTable, DeValue};
use toml::Spanned;

/// One step of a field path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Step {
    Key(String),
    Index(usize),
}

/// The steps of `field`, as far as they can be read (a path such as `line 3, column Key` that is
/// not a field path gives what precedes the first step that is not one).
pub(super) fn steps(field: &str) -> Vec<Step> {
    let mut steps = Vec::new();
    let mut rest = field;
    while !rest.is_empty() {
        rest = rest.strip_prefix('.').unwrap_or(rest);
        if let Some(r) = rest.strip_prefix('[') {
            let Some((n, r)) = r.split_once(']') else { break };
            let Ok(n) = n.parse() else { break };
            steps.push(Step::Index(n));
            rest = r;
        } else if rest.starts_with('"') {
            let Some((key, r)) = quoted(rest) else { break };
            steps.push(Step::Key(key));
            rest = r;
        } else {
            let end = rest.find(['.', '[']).unwrap_or(rest.len());
            let key = &rest[..end];
            if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                break;
            }
            steps.push(Step::Key(key.to_owned()));
            rest = &rest[end..];
        }
    }
    steps
}

/// A key written as Rust's `{:?}` writes a string, and what follows it.
fn quoted(text: &str) -> Option<(String, &str)> {
    let mut key = String::new();
    let mut chars = text.char_indices().skip(1);
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((key, &text[i + 1..])),
            '\\' => match chars.next()?.1 {
                'n' => key.push('\n'),
                't' => key.push('\t'),
                'r' => key.push('\r'),
                '0' => key.push('\0'),
                'u' => {
                    let (start, _) = chars.next()?; // `{`
                    let end = text[start..].find('}')? + start;
                    key.push(char::from_u32(u32::from_str_radix(&text[start + 1..end], 16).ok()?)?);
                    while chars.next()?.0 < end {}
                }
                other => key.push(other),
            },
            c => key.push(c),
        }
    }
    None
}

/// Renders a path as the errors of this crate name fields: `plans[1].throttle.burst`, keys that
/// are not plain words quoted (`methods."/pets/GET"`).
pub(super) fn render(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    for segment in path.iter() {
        match segment {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } | Segment::Enum { variant: key } => {
                if !out.is_empty() {
                    out.push('.');
                }
                if !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                    out.push_str(key);
                } else {
                    out.push_str(&format!("{key:?}"));
                }
            }
            Segment::Unknown => {}
        }
    }
    out
}

/// Line and column (from 1, the column in characters) of byte `offset` of `text`.
pub(super) fn line_column(text: &str, offset: usize) -> (u32, u32) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
    (u32::try_from(line).unwrap_or(u32::MAX), u32::try_from(column).unwrap_or(u32::MAX))
}

/// Where the deepest step of `field` found in the TOML `text` starts (its value; for an array of
/// tables, its first key).
pub(super) fn in_toml(text: &str, field: &str) -> Option<usize> {
    let root = DeTable::parse(text).ok()?;
    let mut at: Option<&Spanned<DeValue<'_>>> = None;
    let mut table = Some(root.get_ref());
    let mut found = None;
    for step in steps(field) {
        let next = match (&step, at.map(Spanned::get_ref)) {
            (Step::Key(k), _) => table.and_then(|t| t.iter().find(|(name, _)| name.get_ref() == k).map(|(_, v)| v)),
            (Step::Index(i), Some(DeValue::Array(items))) => items.get(*i),
            _ => None,
        };
        let Some(value) = next else { break };
        at = Some(value);
        table = match value.get_ref() {
            DeValue::Table(t) => Some(t),
            _ => None,
        };
        let span = value.span();
        // A table made by a `[header]` may have no span of its own: keep the last one found.
        if span.end > span.start {
            found = Some(span.start);
        }
    }
    found
}

/// The start of the first line at which the TOML `text` fails to parse with `message`, for a
/// parse error without a span (such as a dotted key too deep): the shortest prefix of whole
/// lines that fails so, found by bisection (a few parses, only on error).
pub(super) fn toml_failing_line(text: &str, message: &str) -> Option<usize> {
    let starts: Vec<usize> = std::iter::once(0).chain(text.match_indices('\n').map(|(i, _)| i + 1)).collect();
    let fails = |lines: usize| {
        let end = starts.get(lines).copied().unwrap_or(text.len());
        matches!(DeTable::parse(&text[..end]), Err(e) if e.message().trim() == message)
    };
    let (mut lo, mut hi) = (1, starts.len());
    if !fails(hi) {
        return None;
    }
    while lo < hi {
        let mid = (lo + hi) / 2;
        if fails(mid) {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    Some(starts[lo - 1])
}

/// Where the deepest step of `field` found in the JSON `text` (already parsed without error)
/// starts.
pub(super) fn in_json(text: &str, field: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut pos = skip_ws(bytes, 0);
    let mut found = None;
    for step in steps(field) {
        let next = match (step, bytes.get(pos)) {
            (Step::Key(k), Some(b'{')) => member(text, pos, &k),
            (Step::Index(i), Some(b'[')) => element(bytes, pos, i),
            _ => None,
        };
        let Some(p) = next else { break };
        pos = p;
        found = Some(p);
    }
    found
}

fn skip_ws(bytes: &[u8], mut pos: usize) -> usize {
    while bytes.get(pos).is_some_and(u8::is_ascii_whitespace) {
        pos += 1;
    }
    pos
}

/// The end of the JSON value at `pos` (valid JSON assumed; stops at the end of the text).
fn skip_value(bytes: &[u8], pos: usize) -> usize {
    match bytes.get(pos) {
        Some(b'"') => skip_string(bytes, pos),
        Some(b'{' | b'[') => {
            let mut depth = 0usize;
            let mut i = pos;
            while let Some(&b) = bytes.get(i) {
                match b {
                    b'"' => {
                        i = skip_string(bytes, i);
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth = depth.saturating_sub(1);
                        if depth == 0 {
                            return i + 1;
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
            i
        }
        _ => {
            let mut i = pos;
            while bytes.get(i).is_some_and(|b| !matches!(b, b',' | b'}' | b']') && !b.is_ascii_whitespace()) {
                i += 1;
            }
            i
        }
    }
}

/// The end of the string starting at `pos` (after its closing quote).
fn skip_string(bytes: &[u8], pos: usize) -> usize {
    let mut i = pos + 1;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'\\' => i += 2,
            b'"' => return i + 1,
            _ => i += 1,
        }
    }
    i
}

/// The start of the value of member `key` of the object at `pos`.
fn member(text: &str, pos: usize, key: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut i = skip_ws(bytes, pos + 1);
    while bytes.get(i) == Some(&b'"') {
        let end = skip_string(bytes, i);
        let name: Option<String> = serde_json::from_str(text.get(i..end)?).ok();
        let value = skip_ws(bytes, skip_ws(bytes, end) + 1);
        if name.as_deref() == Some(key) {
            return Some(value);
        }
        i = skip_ws(bytes, skip_value(bytes, value));
        if bytes.get(i) != Some(&b',') {
            return None;
        }
        i = skip_ws(bytes, i + 1);
    }
    None
}

/// The start of element `index` of the array at `pos`.
fn element(bytes: &[u8], pos: usize, index: usize) -> Option<usize> {
    let mut i = skip_ws(bytes, pos + 1);
    for _ in 0..index {
        if matches!(bytes.get(i), None | Some(b']')) {
            return None;
        }
        i = skip_ws(bytes, skip_value(bytes, i));
        if bytes.get(i) != Some(&b',') {
            return None;
        }
        i = skip_ws(bytes, i + 1);
    }
    (!matches!(bytes.get(i), None | Some(b']'))).then_some(i)
}
