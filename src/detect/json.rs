//! A borrowed JSON tree for the rules: strings borrow from the input (request body or a
//! parsed manifest), objects are small vectors of pairs (no hashing). Building it costs a
//! fraction of a `serde_json::Value`, and [`parse_pruned`] builds only the parts a [`Want`]
//! asks for, skipping the rest of the bytes without allocating.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

/// A JSON value borrowing its strings.
#[derive(Debug, Clone, PartialEq)]
pub enum Json<'a> {
    Null,
    Bool(bool),
    /// Numbers are kept only as a kind: no rule reads them.
    Number,
    Str(Cow<'a, str>),
    Array(Vec<Json<'a>>),
    Object(Vec<(Cow<'a, str>, Json<'a>)>),
}

/// The entries of a JSON object.
pub type Object<'a> = [(Cow<'a, str>, Json<'a>)];

impl<'a> Json<'a> {
    /// A field of an object (`None` for other kinds). The first one wins on duplicate keys.
    pub fn get(&self, key: &str) -> Option<&Json<'a>> {
        match self {
            Json::Object(entries) => field(entries, key),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Json::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_object(&self) -> Option<&Object<'a>> {
        match self {
            Json::Object(entries) => Some(entries),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[Json<'a>]> {
        match self {
            Json::Array(items) => Some(items),
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Json::Null)
    }

    /// `a string`, `a mapping`, … for error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Json::Null => "null",
            Json::Bool(_) => "a boolean",
            Json::Number => "a number",
            Json::Str(_) => "a string",
            Json::Array(_) => "an array",
            Json::Object(_) => "a mapping",
        }
    }
}

/// A field of an object's entries.
pub fn field<'o, 'a>(entries: &'o Object<'a>, key: &str) -> Option<&'o Json<'a>> {
    entries
        .iter()
        .find(|(k, _)| k.as_ref() == key)
        .map(|(_, v)| v)
}

impl<'a> From<&'a Value> for Json<'a> {
    fn from(v: &'a Value) -> Self {
        match v {
            Value::Null => Json::Null,
            Value::Bool(b) => Json::Bool(*b),
            Value::Number(_) => Json::Number,
            Value::String(s) => Json::Str(Cow::Borrowed(s)),
            Value::Array(a) => Json::Array(a.iter().map(Json::from).collect()),
            Value::Object(m) => Json::Object(
                m.iter()
                    .map(|(k, v)| (Cow::Borrowed(k.as_str()), Json::from(v)))
                    .collect(),
            ),
        }
    }
}

/// Which parts of a JSON value to keep. `Fields` applies to an object, and to every element of
/// an array (lists of containers, volumes, …); any other value is kept whole, so a field of
/// the wrong type still reaches the rules and gets its error with the field path.
#[derive(Debug, Clone, Copy)]
pub enum Want {
    All,
    Fields(&'static [(&'static str, Want)]),
}

/// Parses `body`, keeping only what `want` asks for. Errors are JSON syntax errors.
pub fn parse_pruned(body: &[u8], want: Want) -> Result<Json<'_>, serde_json::Error> {
    // Checking all of a (valid) body for UTF-8 once is cheaper than the byte parser checking
    // every string it reads, key by key. A body that is not UTF-8 goes to the byte parser, as
    // before: it rejects bad UTF-8 only in the strings it reads, so answers do not change.
    match std::str::from_utf8(body) {
        Ok(text) => parse_from(serde_json::Deserializer::from_str(text), want),
        Err(_) => parse_from(serde_json::Deserializer::from_slice(body), want),
    }
}

fn parse_from<'a, R: serde_json::de::Read<'a>>(
    mut de: serde_json::Deserializer<R>,
    want: Want,
) -> Result<Json<'a>, serde_json::Error> {
    let value = Prune(want).deserialize(&mut de)?;
    de.end()?;
    Ok(value)
}

/// Parses all of `body`.
pub fn parse(body: &[u8]) -> Result<Json<'_>, serde_json::Error> {
    parse_pruned(body, Want::All)
}

struct Prune(Want);

impl<'de> DeserializeSeed<'de> for Prune {
    type Value = Json<'de>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Json<'de>, D::Error> {
        d.deserialize_any(PruneVisitor(self.0))
    }
}

struct PruneVisitor(Want);

impl<'de> Visitor<'de> for PruneVisitor {
    type Value = Json<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Json<'de>, E> {
        Ok(Json::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Json<'de>, E> {
        Ok(Json::Number)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Json<'de>, E> {
        Ok(Json::Number)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Json<'de>, E> {
        Ok(Json::Number)
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Json<'de>, E> {
        Ok(Json::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Json<'de>, E> {
        Ok(Json::Str(Cow::Owned(v.to_owned())))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Json<'de>, E> {
        Ok(Json::Str(Cow::Owned(v)))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Json<'de>, E> {
        Ok(Json::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<Json<'de>, E> {
        Ok(Json::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Json<'de>, D::Error> {
        Prune(self.0).deserialize(d)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json<'de>, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(4).min(64));
        while let Some(v) = seq.next_element_seed(Prune(self.0))? {
            out.push(v);
        }
        Ok(Json::Array(out))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json<'de>, A::Error> {
        // Most Kubernetes objects the rules read are small (env entries, references).
        let mut out = Vec::with_capacity(map.size_hint().unwrap_or(4).min(64));
        while let Some(key) = map.next_key_seed(Key)? {
            let want = match self.0 {
                Want::All => Some(Want::All),
                Want::Fields(fields) => fields
                    .iter()
                    .find(|(name, _)| *name == key.as_ref())
                    .map(|(_, w)| *w),
            };
            match want {
                Some(w) => {
                    let v = map.next_value_seed(Prune(w))?;
                    out.push((key, v));
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Json::Object(out))
    }
}

struct Key;

impl<'de> DeserializeSeed<'de> for Key {
    type Value = Cow<'de, str>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Cow<'de, str>, D::Error> {
        d.deserialize_str(KeyVisitor)
    }
}

struct KeyVisitor;

impl<'de> Visitor<'de> for KeyVisitor {
    type Value = Cow<'de, str>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string key")
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Borrowed(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Owned(v.to_owned()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Owned(v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const INNER: Want = Want::Fields(&[("keep", Want::All)]);
    const OUTER: Want = Want::Fields(&[("a", Want::All), ("list", INNER)]);

    #[test]
    fn prunes_to_the_wanted_fields_and_applies_fields_to_array_items() {
        let body = br#"{"a": {"x": [1, "s"]}, "b": {"big": [1,2,3]}, "list": [{"keep": "k", "drop": 1}, "odd", 5]}"#;
        let j = parse_pruned(body, OUTER).unwrap();
        let expected = json!({"a": {"x": [1, "s"]}, "list": [{"keep": "k"}, "odd", 5]});
        assert_eq!(j, Json::from(&expected));
    }

    #[test]
    fn borrows_plain_strings_and_unescapes_others() {
        let body = br#"{"k": "plain", "e": "tab\there", "u\u0069d": "x"}"#;
        let j = parse(body).unwrap();
        assert!(matches!(
            j.get("k"),
            Some(Json::Str(Cow::Borrowed("plain")))
        ));
        assert_eq!(j.get("e").and_then(Json::as_str), Some("tab\there"));
        assert_eq!(j.get("uid").and_then(Json::as_str), Some("x"));
    }

    #[test]
    fn invalid_utf8_is_rejected_only_where_it_is_read() {
        let skipped = b"{\"keep\": \"k\", \"drop\": \"\xff\"}";
        let j = parse_pruned(skipped, INNER).unwrap();
        assert_eq!(j.get("keep").and_then(Json::as_str), Some("k"));
        let kept = b"{\"keep\": \"\xff\"}";
        assert!(parse_pruned(kept, INNER).is_err());
        assert!(parse(b"\"\xff\"").is_err());
    }

    #[test]
    fn rejects_invalid_json() {
        assert!(parse(b"{\"a\": ").is_err());
        assert!(parse(b"{} trailing").is_err());
        assert!(parse(b"").is_err());
        assert_eq!(parse(b"\"s\"").unwrap().type_name(), "a string");
    }
}
