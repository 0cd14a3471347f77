use super::*;
use crate::{Config, ConfigErrorKind, InMemoryKeyStore};

const K1: &str = "acme-0123456789abcdefghij";
const K2: &str = "beta-0123456789abcdefghij";

fn parse(text: &str) -> Vec<ImportedKey> {
    parse_api_keys_csv(text).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn aws_sample_parses() {
    let keys = parse(
        "Name,key,description,Enabled,usageplanIds\n\
         MyFirstApiKey,apikeyuniqueForMyFirstApiKey,A key for my first api key,true,c7y23b\n\
         MySecondApiKey,apikey1234abcdefghij0123456789,An imported key,TRUE,\"c7y23b,glvrsr\"\n",
    );
    assert_eq!(keys.len(), 2);
    let k = &keys[0];
    assert_eq!(k.line, 2);
    assert_eq!(k.name.as_deref(), Some("MyFirstApiKey"));
    assert_eq!(k.value.expose(), "apikeyuniqueForMyFirstApiKey");
    assert_eq!(k.description.as_deref(), Some("A key for my first api key"));
    assert!(k.enabled);
    assert_eq!(k.plan_ids, ["c7y23b"]);
    assert_eq!(k.customer_id, None);
    assert_eq!(keys[1].plan_ids, ["c7y23b", "glvrsr"]);
    assert_eq!(keys[1].line, 3);
    assert!(!format!("{keys:?}").contains("apikeyunique"), "Debug must redact the value");
}

#[test]
fn headers_in_any_order_and_case_unknown_columns_ignored() {
    let keys = parse(&format!(
        "ENABLED,Notes,kEy,Usage Plan IDs,name,customer_id,DESCRIPTION\n\
         false,ignored,{K1},p1,Acme,cust-42,hello\n"
    ));
    let k = &keys[0];
    assert_eq!((k.value.expose(), k.name.as_deref(), k.enabled), (K1, Some("Acme"), false));
    assert_eq!(k.plan_ids, ["p1"]);
    assert_eq!(k.customer_id.as_deref(), Some("cust-42"));
    assert_eq!(k.description.as_deref(), Some("hello"));

    // Only the required columns: everything else takes its default.
    let k = &parse(&format!("Key,Name\n{K1},\n"))[0];
    assert_eq!((k.name.as_deref(), k.description.as_deref(), k.enabled), (None, None, true));
    assert!(k.plan_ids.is_empty());
}

#[test]
fn quoted_fields_keep_commas_quotes_and_newlines() {
    let keys = parse(&format!(
        "Name,Key,Description\n\
         \"Acme, Inc.\",\"{K1}\",\"Says \"\"hi\"\", then\nleaves\"\n\
         Beta,{K2},plain\n"
    ));
    assert_eq!(keys[0].name.as_deref(), Some("Acme, Inc."));
    assert_eq!(keys[0].description.as_deref(), Some("Says \"hi\", then\nleaves"));
    // A row's line is where it starts: the quoted newline moves the next row to line 4.
    assert_eq!((keys[0].line, keys[1].line), (2, 4));
}

#[test]
fn bom_crlf_whitespace_and_empty_rows() {
    let keys = parse(&format!("\u{feff}Name , Key\r\n  Acme ,  {K1}  \r\n\r\n,\r\nBeta,{K2}\r\n"));
    assert_eq!(keys.len(), 2);
    assert_eq!(keys[0].name.as_deref(), Some("Acme"));
    assert_eq!(keys[0].value.expose(), K1);
    assert_eq!(keys[1].line, 5);
    assert!(parse("Name,Key\n").is_empty());
    // Empty lines count, before the header too, and a lone CR ends a line.
    let keys = parse(&format!("\n\nName,Key\n\n\na,{K1}\r\rb,{K2}\n"));
    assert_eq!((keys[0].line, keys[1].line), (6, 8));
    let e = parse_api_keys_csv("\r\nName,Key\r\n\r\na,b,c\r\n").unwrap_err();
    assert_eq!(e.line(), Some(4));
    assert!(parse("\u{feff}Name,Key\r\n").is_empty());
}

#[test]
fn enabled_accepts_true_false_in_any_case_and_empty() {
    let text = format!("Name,Key,Enabled\na,{K1}0,TRUE\nb,{K1}1,False\nc,{K1}2,\nd,{K1}3,true\ne,{K1}4,FALSE\n");
    let enabled: Vec<bool> = parse(&text).iter().map(|k| k.enabled).collect();
    assert_eq!(enabled, [true, false, true, true, false]);
}

#[test]
fn plan_id_lists() {
    let cases: [(&str, &[&str]); 8] = [
        ("\"c7y23b,glvrsr\"", &["c7y23b", "glvrsr"]),
        ("\" c7y23b , glvrsr \"", &["c7y23b", "glvrsr"]),
        ("c7y23b;glvrsr", &["c7y23b", "glvrsr"]),
        ("c7y23b glvrsr\tfree", &["c7y23b", "glvrsr", "free"]),
        ("'c7y23b'", &["c7y23b"]),
        ("\"'c7y23b','glvrsr'\"", &["c7y23b", "glvrsr"]),
        ("\"c7y23b,,c7y23b;\"", &["c7y23b"]),
        ("", &[]),
    ];
    for (field, want) in cases {
        let keys = parse(&format!("Name,Key,UsagePlanIds\nn,{K1},{field}\n"));
        assert_eq!(keys[0].plan_ids, want, "{field}");
    }
}

#[track_caller]
fn refused(text: &str, kind: ImportErrorKind, line: Option<u64>, column: Option<&str>, reason: &str) {
    let e = parse_api_keys_csv(text).unwrap_err();
    let shown = e.to_string();
    assert_eq!((e.kind(), e.line(), e.column()), (kind, line, column), "{shown}");
    assert!(e.reason().starts_with(reason), "{shown}");
    let prefix = match (line, column) {
        (Some(l), Some(c)) => format!("line {l}, column {c}: "),
        (Some(l), None) => format!("line {l}: "),
        _ => String::new(),
    };
    assert_eq!(shown, format!("{prefix}{}", e.reason()));
    let long = "k".repeat(129);
    for secret in [K1, K2, "short-key", "0123456789abcdéfghij", "acme 0123456789abcdefghij", &long] {
        assert!(!shown.contains(secret), "{shown} leaks a value");
    }
}

#[test]
fn every_error_names_line_and_column_and_no_value() {
    use ImportErrorKind::*;
    let no_key = format!("Name,Value\nn,{K1}\n");
    refused(&no_key, MissingColumn, Some(1), Some("Key"), "missing from the header");
    let no_name = format!("Key,Description\n{K1},d\n");
    refused(&no_name, MissingColumn, Some(1), Some("Name"), "missing from the header");
    refused("", MissingColumn, Some(1), Some("Key"), "missing from the header");
    let twice = format!("Name,Key,key\nn,{K1},{K2}\n");
    refused(&twice, Duplicate, Some(1), Some("Key"), "appears twice in the header");
    let plans_twice = "Name,Key,usageplanIds,Usage_Plan_Ids\n";
    refused(plans_twice, Duplicate, Some(1), Some("UsagePlanIds"), "appears twice");

    let short = "Name,Key\nok,short-key\n";
    refused(short, Invalid, Some(2), Some("Key"), "must be 20 to 128 characters long, got 9");
    let long = format!("Name,Key\nn,{}\n", "k".repeat(129));
    refused(&long, Invalid, Some(2), Some("Key"), "must be 20 to 128 characters long, got 129");
    refused("Name,Key\nn,\n", Invalid, Some(2), Some("Key"), "must be 20 to 128 characters long, got 0");
    let accented = "Name,Key\nn,0123456789abcdéfghij\n";
    refused(accented, Invalid, Some(2), Some("Key"), "must contain only visible ASCII characters");
    let spaced = format!("Name,Key\nn,\"{}\"\n", K1.replace('-', " "));
    refused(&spaced, Invalid, Some(2), Some("Key"), "must contain only visible ASCII characters");
    let dup = format!("Name,Key\na,{K1}\nb,{K2}\nc,{K1}\n");
    refused(&dup, Duplicate, Some(4), Some("Key"), "the same value as line 2");
    let enabled = format!("Name,Key,Enabled\na,{K1},yes\n");
    refused(&enabled, Invalid, Some(2), Some("Enabled"), "must be true or false");
    // Columns in the wrong order put the key value where an error might quote it: none does.
    let swapped = format!("Name,Enabled,Key\na,{K1},{K2}\n");
    refused(&swapped, Invalid, Some(2), Some("Enabled"), "must be true or false");
    let name = format!("Name,Key\n{},{K1}\n", "é".repeat(MAX_NAME_LEN + 1));
    refused(&name, Invalid, Some(2), Some("Name"), "must be at most 1024 characters long, got 1025");
    let single_quoted = format!("Name,Key,UsagePlanIds\nn,{K1},'c7y23b,glvrsr'\n");
    refused(&single_quoted, Syntax, Some(2), None, "has 4 fields but the header has 3; a field containing commas");
    let missing_field = format!("Name,Key,Enabled\nn,{K1}\n");
    refused(&missing_field, Syntax, Some(2), None, "has 2 fields but the header has 3");
}

#[test]
fn input_is_bounded() {
    let big = format!("Name,Key,Description\nn,{K1},{}\n", "x".repeat(MAX_IMPORT_BYTES));
    let reason = format!("the input has {} bytes, more than the 1048576 accepted", big.len());
    refused(&big, ImportErrorKind::TooLarge, None, None, &reason);

    let rows = |n: usize| {
        (0..n).fold(String::from("Name,Key\n"), |mut s, i| {
            s.push_str(&format!("n,key-{i:020}\n"));
            s
        })
    };
    assert_eq!(parse(&rows(MAX_IMPORT_ROWS)).len(), MAX_IMPORT_ROWS);
    let line = Some(MAX_IMPORT_ROWS as u64 + 2);
    refused(&rows(MAX_IMPORT_ROWS + 1), ImportErrorKind::TooManyRows, line, None, "more than 10000 keys");
}

const CONFIG: &str = r#"
    [stage]
    api = "petstore"
    name = "prod"

    [[plans]]
    id = "c7y23b"
    stages = [{ api = "petstore", stage = "prod" }]

    [[plans]]
    id = "glvrsr"
    stages = [{ api = "petstore", stage = "beta" }]

    [[plans]]
    id = "gold"
    stages = [{ api = "petstore", stage = "prod" }]

    [[keys]]
    id = "k1"
    value = "acme-0123456789abcdefghij"
    description = "from the file"
    plans = ["c7y23b"]
"#;

#[test]
fn imported_keys_are_found_by_the_in_memory_store() {
    let config = Config::from_toml_str(CONFIG).unwrap();
    let keys = parse(&format!(
        "Name,key,description,Enabled,usageplanIds,CustomerId\n\
         MyFirstApiKey,apikeyuniqueForMyFirstApiKey,A key for my first api key,true,c7y23b,\n\
         Disabled,{K2},,false,\"c7y23b,glvrsr\",cust-7\n\
         ,nameless-0123456789abcdefghij,,,,\n"
    ));
    let config = config.with_imported_keys(keys).unwrap();
    let ids: HashSet<&str> = config.keys().iter().map(|(_, k)| k.id()).collect();
    assert_eq!(ids.len(), 4);
    assert!(config.keys()[1..].iter().all(|(_, k)| k.id().len() == crate::keys::GENERATED_ID_LEN));

    let store = InMemoryKeyStore::from_config(config);
    assert_eq!(store.len(), 4);
    assert_eq!(store.get(K1).unwrap().key().description(), Some("from the file"));

    let first = store.get("apikeyuniqueForMyFirstApiKey").unwrap();
    assert_eq!(first.key().name(), "MyFirstApiKey");
    assert_eq!(first.key().description(), Some("A key for my first api key"));
    assert!(first.key().is_enabled());
    assert_eq!(first.plans().iter().map(|p| p.id()).collect::<Vec<_>>(), ["c7y23b"]);

    let disabled = store.get(K2).unwrap();
    assert!(!disabled.key().is_enabled());
    assert_eq!(disabled.key().customer_id(), Some("cust-7"));
    assert_eq!(disabled.plans().iter().map(|p| p.id()).collect::<Vec<_>>(), ["c7y23b", "glvrsr"]);

    let nameless = store.get("nameless-0123456789abcdefghij").unwrap();
    assert_eq!(nameless.key().name(), nameless.key().id());
    assert!(nameless.plans().is_empty());
    assert!(store.get("apikeyuniqueForMyFirstApiKeyX").is_none());
}

#[test]
fn config_import_errors_name_the_line_and_never_the_value() {
    let import = |csv: &str| Config::from_toml_str(CONFIG).unwrap().with_imported_keys(parse(csv)).unwrap_err();

    let e = import(&format!("Name,Key,UsagePlanIds\nb,{K2},\"c7y23b, nope\"\n"));
    assert_eq!(e.kind(), ConfigErrorKind::UnknownReference);
    assert_eq!(e.to_string(), "line 2, column UsagePlanIds: no plan has the id \"nope\"");

    let e = import(&format!("Name,Key\nb,{K2}\na,{K1}\n"));
    assert_eq!(e.kind(), ConfigErrorKind::Duplicate);
    assert_eq!(e.to_string(), "line 3, column Key: the same value as keys[0]");

    let e = import(&format!("Name,Key,UsagePlanIds\nb,{K2},c7y23b;gold\n"));
    assert_eq!(e.kind(), ConfigErrorKind::Duplicate);
    assert!(e.to_string().starts_with("line 2, column UsagePlanIds: plans \"c7y23b\" and \"gold\" both apply"), "{e}");

    // Two files imported together: values must be unique across them too.
    let mut keys = parse(&format!("Name,Key\nb,{K2}\n"));
    keys.extend(parse(&format!("Name,Key\n\n\nc,{K2}\n")));
    let e = Config::from_toml_str(CONFIG).unwrap().with_imported_keys(keys).unwrap_err();
    assert_eq!(e.to_string(), "line 4, column Key: the same value as line 2");
}
