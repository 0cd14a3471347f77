//! Tags on keys and plans: free-form name/value pairs, as API Gateway keeps them.

use crate::error::ConfigError;
use std::collections::BTreeMap;

/// Tags by name.
pub(crate) type Tags = BTreeMap<String, String>;

/// Most tags one key or plan may have (API Gateway's limit).
pub(crate) const MAX_TAGS: usize = 50;

/// Checks API Gateway's limits: at most [`MAX_TAGS`] tags, names of 1 to 128 characters that do
/// not start with `aws:` (reserved), values of at most 256 characters. Errors name the field
/// `tags` or `tags."<name>"`.
pub(crate) fn check_tags(tags: &Tags) -> Result<(), ConfigError> {
    if tags.len() > MAX_TAGS {
        return Err(ConfigError::invalid("tags", format!("at most {MAX_TAGS} tags, got {}", tags.len())));
    }
    for (name, value) in tags {
        let field = || format!("tags.{name:?}");
        let len = name.chars().count();
        if !(1..=128).contains(&len) {
            return Err(ConfigError::invalid(
                "tags",
                format!("a tag name must be 1 to 128 characters long, got {len}"),
            ));
        }
        if name.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("aws:")) {
            return Err(ConfigError::invalid(field(), "tag names starting with \"aws:\" are reserved"));
        }
        let len = value.chars().count();
        if len > 256 {
            return Err(ConfigError::invalid(field(), format!("must be at most 256 characters long, got {len}")));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits() {
        let tags = |n: &str, v: &str| Tags::from([(n.to_owned(), v.to_owned())]);
        assert!(check_tags(&tags("team", "billing")).is_ok());
        assert_eq!(check_tags(&tags("", "x")).unwrap_err().field(), "tags");
        assert_eq!(
            check_tags(&tags("AWS:x", "x")).unwrap_err().to_string(),
            "tags.\"AWS:x\": tag names starting with \"aws:\" are reserved"
        );
        assert!(check_tags(&tags(&"n".repeat(129), "x")).is_err());
        assert!(check_tags(&tags("n", &"v".repeat(257))).is_err());
        let many: Tags = (0..=MAX_TAGS).map(|i| (format!("t{i}"), String::new())).collect();
        assert!(check_tags(&many).is_err());
    }
}
