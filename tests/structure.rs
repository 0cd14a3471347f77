//! The house rules of `docs/architecture.md`, checked over the source tree: no import cycle
//! between the files of `src/`, and no file of `src/` over 500 lines.
//!
//! An import is any path through `crate::`, `super::` or `self::` (in `use` declarations and
//! inline), and a `use` of a child module. It points at the deepest module file the path names:
//! `use crate::engine::gcra::Gcra` ties the file to `src/engine/gcra.rs`, `use crate::engine::Gcra`
//! to `src/engine/mod.rs`. So a file must reach a sibling directly (`super::gcra::Gcra`), never
//! through a parent that re-exports it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Longest file allowed in `src/`.
const MAX_LINES: usize = 500;

/// The module path of a file under `src/` (`engine/mod.rs` → `["engine"]`, `lib.rs` → `[]`).
fn module_of(rel: &str) -> Vec<String> {
    let rel = rel.strip_suffix(".rs").unwrap_or(rel);
    let mut parts: Vec<String> = rel.split('/').map(str::to_owned).collect();
    if matches!(parts.last().map(String::as_str), Some("mod" | "lib")) {
        parts.pop();
    }
    parts
}

/// Source text without comments, string and char literals (their text could look like a path).
fn strip(src: &str) -> String {
    let b = src.as_bytes();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'/' if b.get(i + 1) == Some(&b'/') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let mut depth = 0;
                while i < b.len() {
                    if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
                        depth += 1;
                        i += 2;
                    } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        i += 1;
                    }
                }
            }
            b'r' if (b.get(i + 1) == Some(&b'"') || b.get(i + 1) == Some(&b'#'))
                && (i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_')) =>
            {
                // A raw string: r"..." or r#"..."#.
                let mut j = i + 1;
                let mut hashes = 0;
                while b.get(j) == Some(&b'#') {
                    hashes += 1;
                    j += 1;
                }
                if b.get(j) != Some(&b'"') {
                    out.push('r');
                    i += 1;
                    continue;
                }
                j += 1;
                loop {
                    if j >= b.len() {
                        break;
                    }
                    if b[j] == b'"' && b[j + 1..].iter().take(hashes).filter(|&&c| c == b'#').count() == hashes {
                        j += 1 + hashes;
                        break;
                    }
                    j += 1;
                }
                out.push_str("\"\"");
                i = j;
            }
            b'"' => {
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
                out.push_str("\"\"");
            }
            b'\'' => {
                // A char literal ('a', '\n', '\'') or a lifetime ('a): skip only literals.
                let lit = matches!((b.get(i + 1), b.get(i + 2)), (Some(b'\\'), _) | (Some(_), Some(b'\'')));
                if lit {
                    i += 1;
                    while i < b.len() && b[i] != b'\'' {
                        i += if b[i] == b'\\' { 2 } else { 1 };
                    }
                    i += 1;
                    out.push_str("' '");
                } else {
                    out.push('\'');
                    i += 1;
                }
            }
            c => {
                out.push(c as char);
                i += 1;
            }
        }
    }
    out
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Sep,
    Open,
    Close,
    Other(char),
}

fn tokens(src: &str) -> Vec<Tok> {
    let mut out = Vec::new();
    let mut chars = src.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_alphanumeric() || c == '_' {
            let mut s = String::from(c);
            while let Some(&n) = chars.peek() {
                if n.is_alphanumeric() || n == '_' {
                    s.push(n);
                    chars.next();
                } else {
                    break;
                }
            }
            out.push(Tok::Ident(s));
        } else if c == ':' && chars.peek() == Some(&':') {
            chars.next();
            out.push(Tok::Sep);
        } else if c == '{' {
            out.push(Tok::Open);
        } else if c == '}' {
            out.push(Tok::Close);
        } else if !c.is_whitespace() {
            out.push(Tok::Other(c));
        }
    }
    out
}

/// What a file refers to and what it hands on.
#[derive(Debug, Default)]
struct Refs {
    /// Every path the file refers to, absolute from the crate root.
    paths: Vec<Vec<String>>,
    /// Its re-exports (`pub use`): the name it offers → the path it names.
    exports: BTreeMap<String, Vec<String>>,
    /// Child modules declared `#[cfg(test)] mod x;`: test code, not rooms of the house.
    test_children: BTreeSet<String>,
}

/// The index of the `}` closing the `{` at `open` (or the end).
fn closing(toks: &[Tok], open: usize) -> usize {
    let mut depth = 0usize;
    for (j, t) in toks.iter().enumerate().skip(open) {
        match t {
            Tok::Open => depth += 1,
            Tok::Close => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return j;
                }
            }
            _ => {}
        }
    }
    toks.len()
}

/// Whether the tokens before `i` are `#[cfg(test)]`.
fn cfg_test_before(toks: &[Tok], i: usize) -> bool {
    let want = [
        Tok::Other('#'),
        Tok::Other('['),
        Tok::Ident("cfg".into()),
        Tok::Other('('),
        Tok::Ident("test".into()),
        Tok::Other(')'),
        Tok::Other(']'),
    ];
    i >= want.len() && toks[i - want.len()..i] == want
}

/// What a file in module `module` refers to and re-exports.
fn references(src: &str, module: &[String]) -> Refs {
    let toks = tokens(&strip(src));
    let mut found = Refs::default();
    // Inline modules (`mod tests { ... }`): (name, brace depth at which it closes).
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut children: BTreeSet<String> = BTreeSet::new();
    let mut depth = 0usize;
    let here = |inline: &[(String, usize)]| -> Vec<String> {
        module.iter().cloned().chain(inline.iter().map(|(n, _)| n.clone())).collect()
    };
    let mut i = 0;
    while i < toks.len() {
        match &toks[i] {
            Tok::Open => depth += 1,
            Tok::Close => {
                depth = depth.saturating_sub(1);
                if inline.last().is_some_and(|(_, d)| *d == depth) {
                    inline.pop();
                }
            }
            Tok::Ident(w) if w == "mod" => {
                if let Some(Tok::Ident(name)) = toks.get(i + 1) {
                    let test = cfg_test_before(&toks, i);
                    match toks.get(i + 2) {
                        Some(Tok::Open) if test => {
                            // Test code is no part of the house: skip the module's body.
                            i = closing(&toks, i + 2) + 1;
                            continue;
                        }
                        Some(Tok::Other(';')) if test && inline.is_empty() => {
                            found.test_children.insert(name.clone());
                        }
                        Some(Tok::Open) => {
                            inline.push((name.clone(), depth));
                            depth += 1;
                            i += 3;
                            continue;
                        }
                        Some(Tok::Other(';')) if inline.is_empty() => {
                            children.insert(name.clone());
                        }
                        _ => {}
                    }
                }
            }
            Tok::Ident(w) if w == "use" => {
                let end = toks[i..].iter().position(|t| *t == Tok::Other(';')).map_or(toks.len(), |p| i + p);
                let base = here(&inline);
                let public = inline.is_empty()
                    && i > 0
                    && (toks[i - 1] == Tok::Ident("pub".into()) || toks[i - 1] == Tok::Other(')'));
                let mut paths = Vec::new();
                use_tree(&toks[i + 1..end], &mut Vec::new(), &mut paths);
                for (p, alias) in paths {
                    if let Some(abs) = absolute(&p, &base, &children, true) {
                        let name = alias.or_else(|| abs.last().cloned());
                        if let (true, Some(name)) = (public, name) {
                            found.exports.insert(name, abs.clone());
                        }
                        found.paths.push(abs);
                    }
                }
                i = end + 1;
                continue;
            }
            Tok::Ident(w) if (w == "crate" || w == "super" || w == "self") && toks.get(i + 1) == Some(&Tok::Sep) => {
                let prev_sep = i > 0 && toks[i - 1] == Tok::Sep;
                if !prev_sep {
                    let mut p = vec![w.clone()];
                    let mut j = i + 1;
                    while toks.get(j) == Some(&Tok::Sep) {
                        match toks.get(j + 1) {
                            Some(Tok::Ident(s)) => {
                                p.push(s.clone());
                                j += 2;
                            }
                            _ => break,
                        }
                    }
                    if let Some(abs) = absolute(&p, &here(&inline), &children, false) {
                        found.paths.push(abs);
                    }
                    i = j;
                    continue;
                }
            }
            _ => {}
        }
        i += 1;
    }
    found
}

/// A path a `use` brings in, and the name it is bound to (its last segment, or the `as` name).
type UsePath = (Vec<String>, Option<String>);

/// Expands a use tree (`a::{b, c::d as e, *}`) into its paths.
fn use_tree(toks: &[Tok], prefix: &mut Vec<String>, out: &mut Vec<UsePath>) {
    let mut i = 0;
    let start = prefix.len();
    let mut alias = None;
    while i < toks.len() {
        match &toks[i] {
            Tok::Ident(w) if w == "as" => {
                if let Some(Tok::Ident(a)) = toks.get(i + 1) {
                    alias = Some(a.clone());
                }
                i += 2;
            }
            Tok::Ident(w) if w == "pub" || w == "crate" && toks.get(i + 1) == Some(&Tok::Other(')')) => i += 1,
            Tok::Ident(w) => {
                prefix.push(w.clone());
                i += 1;
            }
            Tok::Sep => i += 1,
            Tok::Open => {
                // The group's members, split at the commas of its own level.
                let end = closing(toks, i);
                let mut parts = Vec::new();
                let (mut depth, mut part_start) = (0usize, i + 1);
                for (j, t) in toks.iter().enumerate().take(end).skip(i + 1) {
                    match t {
                        Tok::Open => depth += 1,
                        Tok::Close => depth = depth.saturating_sub(1),
                        Tok::Other(',') if depth == 0 => {
                            parts.push(&toks[part_start..j]);
                            part_start = j + 1;
                        }
                        _ => {}
                    }
                }
                parts.push(&toks[part_start..end.min(toks.len())]);
                for part in parts {
                    let mut p = prefix.clone();
                    use_tree(part, &mut p, out);
                }
                prefix.truncate(start);
                return;
            }
            Tok::Other(',') => {
                out.push((prefix.clone(), alias.take()));
                prefix.truncate(start);
                i += 1;
            }
            _ => i += 1,
        }
    }
    if !prefix.is_empty() {
        out.push((prefix.clone(), alias));
    }
}

/// A path made absolute, or `None` for a path into another crate.
fn absolute(p: &[String], here: &[String], children: &BTreeSet<String>, in_use: bool) -> Option<Vec<String>> {
    let mut base: Vec<String>;
    let mut rest = p;
    match p.first().map(String::as_str) {
        Some("crate") => {
            base = Vec::new();
            rest = &p[1..];
        }
        Some("super") | Some("self") => {
            base = here.to_vec();
            while let Some(first) = rest.first().map(String::as_str) {
                match first {
                    "super" => {
                        base.pop();
                    }
                    "self" => {}
                    _ => break,
                }
                rest = &rest[1..];
            }
        }
        Some(first) if in_use && children.contains(first) => base = here.to_vec(),
        _ => return None,
    }
    base.extend(rest.iter().filter(|s| s.as_str() != "self").cloned());
    Some(base)
}

/// The file that defines what `path` names: the deepest module file on the path, or, when that
/// file only re-exports the name, the file the re-export leads to.
fn resolve<'a>(
    path: &[String],
    files: &'a BTreeMap<Vec<String>, String>,
    refs: &BTreeMap<String, Refs>,
    hops: u32,
) -> Option<&'a String> {
    let n = (0..=path.len()).rev().find(|n| files.contains_key(&path[..*n]))?;
    let file = &files[&path[..n]];
    match path.get(n).and_then(|name| refs[file].exports.get(name)) {
        Some(target) if hops < 16 && target.as_slice() != path => resolve(target, files, refs, hops + 1).or(Some(file)),
        _ => Some(file),
    }
}

/// The import graph of `sources` (file path under `src/` → text): file → files it imports.
fn graph(sources: &BTreeMap<String, String>) -> BTreeMap<String, BTreeSet<String>> {
    let files: BTreeMap<Vec<String>, String> = sources.keys().map(|f| (module_of(f), f.clone())).collect();
    let refs: BTreeMap<String, Refs> =
        sources.iter().map(|(file, text)| (file.clone(), references(text, &module_of(file)))).collect();
    let mut tests: BTreeSet<&String> = BTreeSet::new();
    for (file, r) in &refs {
        for c in &r.test_children {
            let mut m = module_of(file);
            m.push(c.clone());
            tests.extend(files.get(&m));
        }
    }
    refs.iter()
        .filter(|(file, _)| !tests.contains(file))
        .map(|(file, r)| {
            let deps = r
                .paths
                .iter()
                .filter_map(|p| resolve(p, &files, &refs, 0))
                .filter(|f| *f != file && !tests.contains(f))
                .cloned()
                .collect();
            (file.clone(), deps)
        })
        .collect()
}

/// The groups of files that import each other in a loop (Tarjan's strongly connected components).
fn cycles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct T<'g> {
        g: &'g BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'g str, usize>,
        low: BTreeMap<&'g str, usize>,
        stack: Vec<&'g str>,
        on: BTreeSet<&'g str>,
        out: Vec<Vec<String>>,
    }
    fn visit<'g>(t: &mut T<'g>, v: &'g str) {
        let n = t.index.len();
        t.index.insert(v, n);
        t.low.insert(v, n);
        t.stack.push(v);
        t.on.insert(v);
        for w in t.g.get(v).into_iter().flatten() {
            if !t.index.contains_key(w.as_str()) {
                visit(t, w);
                let lw = t.low[w.as_str()];
                let lv = t.low.get_mut(v).unwrap();
                *lv = (*lv).min(lw);
            } else if t.on.contains(w.as_str()) {
                let iw = t.index[w.as_str()];
                let lv = t.low.get_mut(v).unwrap();
                *lv = (*lv).min(iw);
            }
        }
        if t.low[v] == t.index[v] {
            let mut group = Vec::new();
            while let Some(w) = t.stack.pop() {
                t.on.remove(w);
                group.push(w.to_owned());
                if w == v {
                    break;
                }
            }
            if group.len() > 1 {
                group.sort();
                t.out.push(group);
            }
        }
    }
    let mut t = T {
        g: graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in graph.keys() {
        if !t.index.contains_key(v.as_str()) {
            visit(&mut t, v);
        }
    }
    t.out
}

fn read_tree(root: &Path) -> BTreeMap<String, String> {
    fn walk(dir: &Path, root: &Path, out: &mut BTreeMap<String, String>) {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
        entries.sort();
        for p in entries {
            if p.is_dir() {
                walk(&p, root, out);
            } else if p.extension().is_some_and(|e| e == "rs") {
                let rel = p.strip_prefix(root).unwrap().to_string_lossy().replace('\\', "/");
                out.insert(rel, std::fs::read_to_string(&p).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

/// What [`cycles`] and the size rule find in a tree, in words (empty: the tree keeps the rules).
fn violations(sources: &BTreeMap<String, String>) -> Vec<String> {
    let g = graph(sources);
    let mut out: Vec<String> = cycles(&g)
        .into_iter()
        .map(|group| {
            let ties: Vec<String> = group
                .iter()
                .flat_map(|a| g[a].iter().filter(|b| group.contains(b)).map(move |b| format!("{a} -> {b}")))
                .collect();
            format!("import cycle between {}: {}", group.join(", "), ties.join("; "))
        })
        .collect();
    for (file, text) in sources {
        let lines = text.lines().count();
        if lines > MAX_LINES {
            out.push(format!("src/{file} has {lines} lines, more than {MAX_LINES}"));
        }
    }
    out
}

#[test]
fn src_has_no_import_cycle_between_files_and_no_file_over_500_lines() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let sources = read_tree(&root);
    assert!(sources.len() > 20, "read {} files under {}", sources.len(), root.display());
    let found = violations(&sources);
    assert!(found.is_empty(), "house rules broken (docs/architecture.md):\n{}", found.join("\n"));
}

fn tree(files: &[(&str, &str)]) -> BTreeMap<String, String> {
    files.iter().map(|(f, t)| ((*f).to_owned(), (*t).to_owned())).collect()
}

#[test]
fn the_check_finds_a_planted_cycle_and_names_its_ties() {
    let planted = tree(&[
        ("lib.rs", "mod engine;\nmod http;\n"),
        ("engine/mod.rs", "mod gcra;\npub(crate) use gcra::Gcra;\n"),
        ("engine/gcra.rs", "use crate::http::Layer; // planted\npub(crate) struct Gcra;\n"),
        ("http/mod.rs", "use crate::engine::{Gcra, /* comment */ };\npub struct Layer;\n"),
    ]);
    let found = violations(&planted);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].contains("engine/gcra.rs -> http/mod.rs"), "{found:?}");
    assert!(found[0].contains("engine/mod.rs -> engine/gcra.rs"), "{found:?}");
    // Without the planted import the same tree is clean.
    let mut clean = planted.clone();
    clean.insert("engine/gcra.rs".into(), "pub(crate) struct Gcra;\n".into());
    assert!(violations(&clean).is_empty());
}

#[test]
fn a_re_export_leads_to_the_defining_file_and_test_code_is_left_out() {
    // `a` takes `B` through the parent's re-export: that ties it to `b.rs`, not to `mod.rs`.
    let through_parent = tree(&[
        ("engine/mod.rs", "mod a;\nmod b;\npub(crate) use a::A;\npub(crate) use b::B as Bee;\n"),
        ("engine/a.rs", "use super::Bee;\npub(crate) struct A(Bee);\n#[cfg(test)]\nmod tests { use crate::x::Y; }\n"),
        ("engine/b.rs", "pub(crate) struct B;\n"),
        ("x.rs", "use crate::engine::A;\npub struct Y;\n"),
    ]);
    assert!(violations(&through_parent).is_empty(), "{:?}", violations(&through_parent));
    // A name defined in the parent itself, while the parent uses the child, is a cycle.
    let defined_in_parent = tree(&[
        ("engine/mod.rs", "mod a;\npub(crate) use a::A;\npub(crate) struct Now;\n"),
        ("engine/a.rs", "use super::Now;\npub(crate) struct A(Now);\n"),
    ]);
    assert_eq!(violations(&defined_in_parent).len(), 1);
    // Paths in strings, comments and doc links are not imports; inline paths are.
    let inline = tree(&[
        ("a.rs", "/// [`x`](crate::b::X)\nfn f() { let _ = \"crate::b\"; crate::b::g(); }\n"),
        ("b.rs", "fn g() { crate::a::f() }\n"),
    ]);
    assert_eq!(violations(&inline).len(), 1);
}

#[test]
fn a_file_over_the_limit_is_named() {
    let long = "fn f() {}\n".repeat(MAX_LINES + 1);
    let found = violations(&tree(&[("big.rs", &long)]));
    assert_eq!(found, [format!("src/big.rs has {} lines, more than {MAX_LINES}", MAX_LINES + 1)]);
}
