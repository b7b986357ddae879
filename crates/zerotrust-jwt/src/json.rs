//! JSON parsing that rejects duplicate object members.
//!
//! `serde_json::Value` keeps the last of two members with the same name, so a
//! token whose header or claims contain `"aud":"a","aud":"b"` could be read one way
//! here and another way by a different parser. RFC 7515 section 5.2 allows a
//! recipient to reject such input, and this crate always does.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// Parses `bytes` as one JSON object, rejecting duplicate member names at any depth.
///
/// serde_json limits nesting to 128 levels, so deep input fails with an error
/// instead of exhausting the stack.
pub(crate) fn parse_object(bytes: &[u8]) -> Result<Map<String, Value>, serde_json::Error> {
    let StrictValue(value) = serde_json::from_slice(bytes)?;
    match value {
        Value::Object(map) => Ok(map),
        _ => Err(de::Error::custom("expected a JSON object")),
    }
}

struct StrictValue(Value);

impl<'de> Deserialize<'de> for StrictValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StrictVisitor).map(StrictValue)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value without duplicate object members")
    }

    fn visit_bool<E>(self, value: bool) -> Result<Value, E> {
        Ok(Value::Bool(value))
    }

    fn visit_i64<E>(self, value: i64) -> Result<Value, E> {
        Ok(Value::Number(value.into()))
    }

    fn visit_u64<E>(self, value: u64) -> Result<Value, E> {
        Ok(Value::Number(value.into()))
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<Value, E> {
        Number::from_f64(value)
            .map(Value::Number)
            .ok_or_else(|| E::custom("number is not finite"))
    }

    fn visit_str<E>(self, value: &str) -> Result<Value, E> {
        Ok(Value::String(value.to_owned()))
    }

    fn visit_string<E>(self, value: String) -> Result<Value, E> {
        Ok(Value::String(value))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(StrictValue(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        let mut map = Map::new();
        while let Some(name) = access.next_key::<String>()? {
            if map.contains_key(&name) {
                return Err(de::Error::custom(format_args!("duplicate member {name:?}")));
            }
            let StrictValue(value) = access.next_value()?;
            map.insert(name, value);
        }
        Ok(Value::Object(map))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_object_accepts_plain_object() {
        let map = parse_object(br#"{"a":1,"b":[1.5,"x",null,true],"c":{"d":-2}}"#).unwrap();

        assert_eq!(map["a"], 1);
        assert_eq!(map["b"][0], 1.5);
        assert_eq!(map["c"]["d"], -2);
    }

    #[test]
    fn parse_object_rejects_duplicates_at_any_depth() {
        for input in [
            &br#"{"a":1,"a":1}"#[..],
            br#"{"a":1,"b":2,"a":3}"#,
            br#"{"c":{"d":1,"d":2}}"#,
            br#"{"c":[{"d":1,"d":2}]}"#,
        ] {
            let error = parse_object(input).unwrap_err();
            assert!(error.to_string().contains("duplicate member"), "{error}");
        }
    }

    #[test]
    fn parse_object_rejects_non_objects_and_bad_json() {
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        for input in [&b"[]"[..], b"1", b"\"a\"", b"null", b"{", b"{} x", b"\xff", b"{\"a\":1e999}", deep.as_bytes()] {
            assert!(parse_object(input).is_err(), "{}", String::from_utf8_lossy(input));
        }
    }
}
