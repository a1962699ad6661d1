//! Well-known proto types (timestamps, `Struct` metadata, field masks) and
//! the domain values they carry.

use prost_types::{Struct, Timestamp, Value as ProstValue, value::Kind};
use serde_json::{Map, Number, Value};

use crate::domain::time::Micros;
use crate::domain::types::Metadata;
use crate::domain::{FieldViolation, quote};

pub fn timestamp(micros: Micros) -> Option<Timestamp> {
    Some(Timestamp {
        seconds: micros.div_euclid(1_000_000),
        nanos: (micros.rem_euclid(1_000_000) * 1000) as i32,
    })
}

pub fn optional_timestamp(micros: Option<Micros>) -> Option<Timestamp> {
    micros.and_then(timestamp)
}

/// A proto timestamp as microseconds, refusing out-of-range values.
pub fn micros(field: &str, ts: &Timestamp) -> Result<Micros, FieldViolation> {
    if !(0..1_000_000_000).contains(&ts.nanos) || ts.seconds < 0 || ts.seconds > 253_402_300_799 {
        return Err(FieldViolation::new(field, "must be a valid timestamp"));
    }
    Ok(ts.seconds * 1_000_000 + i64::from(ts.nanos) / 1000)
}

/// A proto `Value` as JSON. JSON has no NaN or infinities: refused rather
/// than stored as `null`.
fn to_json(field: &str, value: &ProstValue) -> Result<Value, FieldViolation> {
    Ok(match &value.kind {
        None | Some(Kind::NullValue(_)) => Value::Null,
        Some(Kind::NumberValue(n)) => Number::from_f64(*n).map(Value::Number).ok_or_else(|| {
            FieldViolation::new(
                field,
                "must not contain NaN or Infinity (JSON has no such numbers)",
            )
        })?,
        Some(Kind::StringValue(s)) => Value::String(s.clone()),
        Some(Kind::BoolValue(b)) => Value::Bool(*b),
        Some(Kind::StructValue(s)) => Value::Object(struct_to_map(field, s)?),
        Some(Kind::ListValue(list)) => Value::Array(
            list.values
                .iter()
                .map(|item| to_json(field, item))
                .collect::<Result<_, _>>()?,
        ),
    })
}

/// A proto `Struct` as a JSON object; `field` names it in a violation.
pub fn struct_to_map(field: &str, s: &Struct) -> Result<Map<String, Value>, FieldViolation> {
    s.fields
        .iter()
        .map(|(k, v)| Ok((k.clone(), to_json(field, v)?)))
        .collect()
}

fn from_json(value: &Value) -> ProstValue {
    let kind = match value {
        Value::Null => Kind::NullValue(0),
        Value::Bool(b) => Kind::BoolValue(*b),
        Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or_default()),
        Value::String(s) => Kind::StringValue(s.clone()),
        Value::Array(items) => Kind::ListValue(prost_types::ListValue {
            values: items.iter().map(from_json).collect(),
        }),
        Value::Object(map) => Kind::StructValue(map_to_struct(map)),
    };
    ProstValue { kind: Some(kind) }
}

pub fn map_to_struct(map: &Map<String, Value>) -> Struct {
    Struct {
        fields: map.iter().map(|(k, v)| (k.clone(), from_json(v))).collect(),
    }
}

/// Request metadata: absent means empty; at most 8 KiB as JSON and 16 levels
/// deep; finite numbers only.
pub fn metadata(field: &str, value: Option<&Struct>) -> Result<Metadata, FieldViolation> {
    let map = match value {
        Some(s) => struct_to_map(field, s)?,
        None => Map::new(),
    };
    Metadata::parse(field, map)
}

/// A metadata patch (deep merge): absent means no change.
pub fn metadata_patch(
    field: &str,
    value: Option<&Struct>,
) -> Result<Option<Map<String, Value>>, FieldViolation> {
    match value {
        None => Ok(None),
        Some(s) => {
            let map = struct_to_map(field, s)?;
            Metadata::parse(field, map.clone())?;
            Ok(Some(map))
        }
    }
}

/// Metadata as a proto Struct.
pub fn metadata_struct(metadata: &Metadata) -> Option<Struct> {
    Some(map_to_struct(&metadata.0))
}

/// The paths of an update mask; a missing or empty mask is refused.
pub fn mask_paths(
    field: &str,
    mask: Option<&prost_types::FieldMask>,
    allowed: &[&str],
) -> Result<Vec<String>, FieldViolation> {
    let paths: Vec<String> = mask
        .map(|m| m.paths.iter().map(|p| p.trim().to_string()).collect())
        .unwrap_or_default();
    if paths.is_empty() {
        return Err(FieldViolation::new(
            field,
            format!("is required; allowed paths: {}", allowed.join(", ")),
        ));
    }
    if let Some(unknown) = paths.iter().find(|p| !allowed.contains(&p.as_str())) {
        return Err(FieldViolation::new(
            field,
            format!(
                "unknown path `{}`; allowed paths: {}",
                quote(unknown),
                allowed.join(", ")
            ),
        ));
    }
    Ok(paths)
}
