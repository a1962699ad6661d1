//! Parse-don't-validate newtypes for every kind of input the API takes. Each
//! parser trims, refuses control characters and enforces the documented limits,
//! and names the field in its violation.

use super::error::FieldViolation;
use serde_json::{Map, Value};

type Parsed<T> = std::result::Result<T, FieldViolation>;

fn has_control(value: &str) -> bool {
    value.chars().any(char::is_control)
}

/// A trimmed string of `min..=max` characters without control characters.
pub fn text(field: &str, value: &str, min: usize, max: usize) -> Parsed<String> {
    let trimmed = value.trim();
    let chars = trimmed.chars().count();
    if has_control(trimmed) {
        return Err(FieldViolation::new(
            field,
            "must not contain control characters",
        ));
    }
    if chars < min {
        return Err(FieldViolation::new(
            field,
            if min == 1 {
                "is required".to_string()
            } else {
                format!("must be at least {min} characters")
            },
        ));
    }
    if chars > max {
        return Err(FieldViolation::new(
            field,
            format!("must be at most {max} characters"),
        ));
    }
    Ok(trimmed.to_string())
}

/// Like [`text`], but empty means absent.
pub fn optional_text(field: &str, value: &str, max: usize) -> Parsed<Option<String>> {
    let value = text(field, value, 0, max)?;
    Ok((!value.is_empty()).then_some(value))
}

/// An organization slug: 2–64 characters of `^[a-z0-9]+(-[a-z0-9]+)*$`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Slug(String);

impl Slug {
    pub const MAX_LEN: usize = 64;

    pub fn parse(field: &str, value: &str) -> Parsed<Slug> {
        let value = value.trim();
        if value.len() < 2 || value.len() > Self::MAX_LEN {
            return Err(FieldViolation::new(field, "must be 2 to 64 characters"));
        }
        let well_formed = value.split('-').all(|part| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        });
        if !well_formed {
            return Err(FieldViolation::new(
                field,
                "must be lowercase letters and digits in groups joined by single hyphens",
            ));
        }
        Ok(Slug(value.to_string()))
    }

    /// The slug a name suggests: lowercase ASCII letters and digits, other runs
    /// turned into single hyphens; `org` when nothing usable is left.
    pub fn derive_from(name: &str) -> Slug {
        let mut slug = String::new();
        let mut pending_hyphen = false;
        for c in name.chars().flat_map(char::to_lowercase) {
            if c.is_ascii_lowercase() || c.is_ascii_digit() {
                if pending_hyphen && !slug.is_empty() {
                    slug.push('-');
                }
                pending_hyphen = false;
                slug.push(c);
            } else {
                pending_hyphen = true;
            }
            if slug.len() >= 48 {
                break;
            }
        }
        let slug = slug.trim_end_matches('-').to_string();
        if slug.len() < 2 {
            Slug("org".to_string())
        } else {
            Slug(slug)
        }
    }

    /// This slug with a suffix, for when the derived one is taken.
    pub fn with_suffix(&self, suffix: &str) -> Slug {
        Slug(format!("{}-{suffix}", self.0))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A user id (or a service name) as the identity provider issues it: 1–128
/// characters, no whitespace or control characters.
pub fn user_id(field: &str, value: &str) -> Parsed<String> {
    let value = value.trim();
    if value.is_empty() {
        return Err(FieldViolation::new(field, "is required"));
    }
    if value.chars().count() > 128 {
        return Err(FieldViolation::new(field, "must be at most 128 characters"));
    }
    if value.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(FieldViolation::new(
            field,
            "must not contain whitespace or control characters",
        ));
    }
    Ok(value.to_string())
}

/// Like [`user_id`], but empty means absent.
pub fn optional_user_id(field: &str, value: &str) -> Parsed<Option<String>> {
    if value.trim().is_empty() {
        Ok(None)
    } else {
        user_id(field, value).map(Some)
    }
}

/// An email address: trimmed, lower-cased, at most 320 characters, one `@`
/// between a local part and a domain name with at least one dot.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Email(String);

impl Email {
    pub fn parse(field: &str, value: &str) -> Parsed<Email> {
        let value = value.trim().to_lowercase();
        if value.is_empty() {
            return Err(FieldViolation::new(field, "is required"));
        }
        if value.len() > 320 {
            return Err(FieldViolation::new(field, "must be at most 320 characters"));
        }
        let shape =
            || FieldViolation::new(field, "must be an email address such as name@example.com");
        let (local, domain) = value.split_once('@').ok_or_else(shape)?;
        if local.is_empty()
            || local.len() > 64
            || local
                .chars()
                .any(|c| c.is_control() || c.is_whitespace() || c == '@')
        {
            return Err(shape());
        }
        if domain_name(field, domain).is_err() {
            return Err(shape());
        }
        Ok(Email(value))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The domain part, after the `@`.
    pub fn domain(&self) -> &str {
        self.0
            .split_once('@')
            .map(|(_, domain)| domain)
            .unwrap_or_default()
    }
}

/// A lower-case DNS name with at least two labels: `example.com`.
pub fn domain_name(field: &str, value: &str) -> Parsed<String> {
    let value = value.trim().trim_end_matches('.').to_lowercase();
    let bad = || FieldViolation::new(field, "must be a domain name such as example.com");
    if value.is_empty() || value.len() > 253 || !value.contains('.') {
        return Err(bad());
    }
    for label in value.split('.') {
        let valid = !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !valid {
            return Err(bad());
        }
    }
    if value
        .rsplit('.')
        .next()
        .is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(bad());
    }
    Ok(value)
}

fn key_segment(segment: &str) -> bool {
    !segment.is_empty()
        && segment
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// A role key: `org:<name>`, lowercase letters, digits and `_`, at most 64 characters.
pub fn role_key(field: &str, value: &str) -> Parsed<String> {
    let value = value.trim();
    let valid = value.len() <= 64 && value.strip_prefix("org:").is_some_and(key_segment);
    if !valid {
        return Err(FieldViolation::new(
            field,
            "must be `org:<name>` with lowercase letters, digits and `_`, at most 64 characters",
        ));
    }
    Ok(value.to_string())
}

/// A permission key: `org:<feature>:<action>`, at most 128 characters.
pub fn permission_key(field: &str, value: &str) -> Parsed<String> {
    let value = value.trim();
    let valid = value.len() <= 128
        && value
            .strip_prefix("org:")
            .and_then(|rest| rest.split_once(':'))
            .is_some_and(|(feature, action)| key_segment(feature) && key_segment(action));
    if !valid {
        return Err(FieldViolation::new(
            field,
            "must be `org:<feature>:<action>` with lowercase letters, digits and `_`, at most 128 characters",
        ));
    }
    Ok(value.to_string())
}

/// The reserved prefix of system permissions.
pub const SYSTEM_PERMISSION_PREFIX: &str = "org:sys_";

/// An idempotency key: at most 64 characters; empty means none.
pub fn request_id(field: &str, value: &str) -> Parsed<Option<String>> {
    optional_text(field, value, 64)
}

/// An opaque resource id: its type prefix, `_`, and 26 Crockford base-32
/// characters (a ULID).
pub fn resource_id(field: &str, value: &str, prefix: &str) -> Parsed<String> {
    let value = value.trim();
    if value.is_empty() {
        return Err(FieldViolation::new(field, "is required"));
    }
    let valid = value
        .strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix('_'))
        .is_some_and(|ulid| ulid.len() == 26 && ulid.bytes().all(|b| b.is_ascii_alphanumeric()));
    if !valid {
        return Err(FieldViolation::new(
            field,
            format!("must be an id of the form {prefix}_…"),
        ));
    }
    Ok(value.to_string())
}

/// Free-form metadata: a JSON object of at most 8 KiB, with objects and arrays
/// nested at most 16 levels deep (the object itself is the first level).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Metadata(pub Map<String, Value>);

/// Levels of objects and arrays in `value`: 0 for a scalar.
fn nesting(value: &Value) -> usize {
    match value {
        Value::Object(map) => 1 + map.values().map(nesting).max().unwrap_or(0),
        Value::Array(items) => 1 + items.iter().map(nesting).max().unwrap_or(0),
        _ => 0,
    }
}

impl Metadata {
    pub const MAX_BYTES: usize = 8 * 1024;
    /// Levels of objects and arrays, the top-level object included. Well
    /// below what the protobuf decoder refuses (about 33 levels), so deep
    /// nesting gets this clear message rather than a decoding error.
    pub const MAX_DEPTH: usize = 16;

    pub fn parse(field: &str, value: Map<String, Value>) -> Parsed<Metadata> {
        let metadata = Metadata(value);
        if 1 + metadata.0.values().map(nesting).max().unwrap_or(0) > Self::MAX_DEPTH {
            return Err(FieldViolation::new(
                field,
                "must not nest objects and arrays more than 16 levels deep",
            ));
        }
        if metadata.to_json().len() > Self::MAX_BYTES {
            return Err(FieldViolation::new(field, "must be at most 8 KiB as JSON"));
        }
        Ok(metadata)
    }

    pub fn to_json(&self) -> String {
        Value::Object(self.0.clone()).to_string()
    }

    /// Reads stored JSON; anything but an object reads as empty.
    pub fn from_json(json: &str) -> Metadata {
        match serde_json::from_str(json) {
            Ok(Value::Object(map)) => Metadata(map),
            _ => Metadata::default(),
        }
    }

    /// Deep-merges `patch` into this metadata: objects merge key by key, a `null`
    /// deletes the key, anything else replaces.
    pub fn merge(&mut self, patch: &Map<String, Value>) {
        merge_into(&mut self.0, patch);
    }
}

fn merge_into(target: &mut Map<String, Value>, patch: &Map<String, Value>) {
    for (key, value) in patch {
        match value {
            Value::Null => {
                target.remove(key);
            }
            Value::Object(patch_object) => {
                if let Some(Value::Object(existing)) = target.get_mut(key) {
                    merge_into(existing, patch_object);
                } else {
                    let mut fresh = Map::new();
                    merge_into(&mut fresh, patch_object);
                    target.insert(key.clone(), Value::Object(fresh));
                }
            }
            other => {
                target.insert(key.clone(), other.clone());
            }
        }
    }
}

/// A list page size: default 50, at most 500 (larger values are lowered).
pub fn page_size(field: &str, value: i32) -> Parsed<u64> {
    match value {
        v if v < 0 => Err(FieldViolation::new(field, "must not be negative")),
        0 => Ok(50),
        v => Ok((v as u64).min(500)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs() {
        assert!(Slug::parse("slug", "acme-inc").is_ok());
        assert!(Slug::parse("slug", "a").is_err());
        assert!(Slug::parse("slug", "Acme").is_err());
        assert!(Slug::parse("slug", "acme--inc").is_err());
        assert!(Slug::parse("slug", "-acme").is_err());
        assert_eq!(Slug::derive_from("  Acme, Inc. ").as_str(), "acme-inc");
        assert_eq!(Slug::derive_from("Ünïcode").as_str(), "n-code");
        assert_eq!(Slug::derive_from("!!").as_str(), "org");
    }

    #[test]
    fn emails() {
        assert_eq!(
            Email::parse("e", " Ann@Example.COM ").unwrap().as_str(),
            "ann@example.com"
        );
        assert_eq!(
            Email::parse("e", "ann@example.com").unwrap().domain(),
            "example.com"
        );
        for bad in [
            "",
            "ann",
            "ann@",
            "@example.com",
            "ann@example",
            "a b@example.com",
            "ann@exa_mple.com",
        ] {
            assert!(Email::parse("e", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn keys() {
        assert!(role_key("k", "org:billing_admin").is_ok());
        assert!(role_key("k", "admin").is_err());
        assert!(role_key("k", "org:Admin").is_err());
        assert!(permission_key("k", "org:invoices:read").is_ok());
        assert!(permission_key("k", "org:invoices").is_err());
        assert!(permission_key("k", "org:invoices:read:x").is_err());
    }

    #[test]
    fn text_limits() {
        assert_eq!(text("n", "  a  ", 1, 3).unwrap(), "a");
        assert!(text("n", "   ", 1, 3).is_err());
        assert!(text("n", "abcd", 1, 3).is_err());
        assert!(text("n", "a\u{0}b", 1, 3).is_err());
    }

    #[test]
    fn metadata_depth_is_limited() {
        let nested = |levels: usize| {
            let mut value = serde_json::json!(1);
            for _ in 1..levels {
                value = serde_json::json!({ "a": value });
            }
            let mut top = Map::new();
            top.insert("a".into(), value);
            top
        };
        // `levels` levels of objects, the top-level one included.
        assert!(Metadata::parse("m", nested(Metadata::MAX_DEPTH)).is_ok());
        let err = Metadata::parse("m", nested(Metadata::MAX_DEPTH + 1)).unwrap_err();
        assert_eq!(err.field, "m");
        assert!(err.description.contains("16 levels"), "{err:?}");
        let mut arrays = Map::new();
        arrays.insert(
            "a".into(),
            serde_json::json!([[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]),
        );
        assert!(Metadata::parse("m", arrays).is_err());
    }

    #[test]
    fn merge_deletes_with_null() {
        let mut metadata = Metadata::from_json(r#"{"a":1,"b":{"c":2,"d":3}}"#);
        let patch = serde_json::json!({"a": null, "b": {"c": null, "e": 4}, "f": [1]});
        metadata.merge(patch.as_object().unwrap());
        assert_eq!(metadata.to_json(), r#"{"b":{"d":3,"e":4},"f":[1]}"#);
    }

    #[test]
    fn ids() {
        assert!(resource_id("id", "org_01jd3x4y5z6a7b8c9d0e1f2g3h", "org").is_ok());
        assert!(resource_id("id", "mem_01jd3x4y5z6a7b8c9d0e1f2g3h", "org").is_err());
        assert!(resource_id("id", "org_short", "org").is_err());
    }
}
