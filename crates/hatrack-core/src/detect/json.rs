//! A borrowed JSON tree for the rules: strings borrow from the input (request body or a
//! parsed manifest), objects are slices of pairs (no hashing), and every node lives in a
//! per-review arena ([`Bump`]), so building the tree is a few pointer bumps instead of a heap
//! allocation per object and array, and dropping it is one free of the arena's chunks.
//! [`parse_pruned`] builds only the parts a [`Want`] asks for, skipping the rest of the bytes.

use std::cell::RefCell;
use std::fmt;

use bumpalo::Bump;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

/// A JSON value borrowing its strings from the input and its nodes from an arena.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Json<'a> {
    Null,
    Bool(bool),
    /// Numbers are kept only as a kind: no rule reads them.
    Number,
    Str(&'a str),
    Array(&'a [Json<'a>]),
    Object(&'a Object<'a>),
}

/// The entries of a JSON object.
pub type Object<'a> = [(&'a str, Json<'a>)];

impl<'a> Json<'a> {
    /// A field of an object (`None` for other kinds). The first one wins on duplicate keys.
    pub fn get(&self, key: &str) -> Option<&Json<'a>> {
        match self {
            Json::Object(entries) => field(entries, key),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&'a str> {
        match self {
            Json::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_object(&self) -> Option<&'a Object<'a>> {
        match self {
            Json::Object(entries) => Some(entries),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&'a [Json<'a>]> {
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

    /// The same tree over a `serde_json::Value` (a manifest read by `check`), strings borrowed
    /// from it, nodes in `arena`.
    pub fn from_value(v: &'a Value, arena: &'a Bump) -> Json<'a> {
        match v {
            Value::Null => Json::Null,
            Value::Bool(b) => Json::Bool(*b),
            Value::Number(_) => Json::Number,
            Value::String(s) => Json::Str(s),
            Value::Array(a) => Json::Array(
                arena.alloc_slice_fill_iter(a.iter().map(|v| Json::from_value(v, arena))),
            ),
            Value::Object(m) => Json::Object(
                arena.alloc_slice_fill_iter(
                    m.iter()
                        .map(|(k, v)| (k.as_str(), Json::from_value(v, arena))),
                ),
            ),
        }
    }
}

/// A field of an object's entries.
pub fn field<'o, 'a>(entries: &'o Object<'a>, key: &str) -> Option<&'o Json<'a>> {
    entries.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
}

/// Which parts of a JSON value to keep. `Fields` applies to an object, and to every element of
/// an array (lists of containers, volumes, …); any other value is kept whole, so a field of
/// the wrong type still reaches the rules and gets its error with the field path.
#[derive(Debug, Clone, Copy)]
pub enum Want {
    All,
    Fields(&'static [(&'static str, Want)]),
}

/// Parses `body`, keeping only what `want` asks for, into `arena`. Errors are JSON syntax
/// errors.
pub fn parse_pruned<'a>(
    body: &'a [u8],
    want: Want,
    arena: &'a Bump,
) -> Result<Json<'a>, serde_json::Error> {
    // Checking all of a (valid) body for UTF-8 once is cheaper than the byte parser checking
    // every string it reads, key by key. A body that is not UTF-8 goes to the byte parser, as
    // before: it rejects bad UTF-8 only in the strings it reads, so answers do not change.
    match std::str::from_utf8(body) {
        Ok(text) => parse_from(serde_json::Deserializer::from_str(text), want, arena),
        Err(_) => parse_from(serde_json::Deserializer::from_slice(body), want, arena),
    }
}

fn parse_from<'a, R: serde_json::de::Read<'a>>(
    mut de: serde_json::Deserializer<R>,
    want: Want,
    arena: &'a Bump,
) -> Result<Json<'a>, serde_json::Error> {
    let builder = Builder {
        arena,
        items: RefCell::default(),
        entries: RefCell::default(),
    };
    let value = Prune(want, &builder).deserialize(&mut de)?;
    de.end()?;
    Ok(value)
}

/// Parses all of `body` into `arena`.
pub fn parse<'a>(body: &'a [u8], arena: &'a Bump) -> Result<Json<'a>, serde_json::Error> {
    parse_pruned(body, Want::All, arena)
}

/// Where a parse puts its nodes. An array's items (an object's entries) are first pushed on
/// one scratch stack shared by the whole parse, then copied to the arena in one allocation of
/// the exact size when the array ends: no grown-out vectors left behind in the arena.
struct Builder<'a> {
    arena: &'a Bump,
    items: RefCell<Vec<Json<'a>>>,
    entries: RefCell<Vec<(&'a str, Json<'a>)>>,
}

impl<'a> Builder<'a> {
    /// Moves what was pushed on `stack` since `start` into the arena.
    fn finish<T: Copy>(&self, stack: &RefCell<Vec<T>>, start: usize) -> &'a [T] {
        let mut stack = stack.borrow_mut();
        let slice = self.arena.alloc_slice_copy(&stack[start..]);
        stack.truncate(start);
        slice
    }
}

struct Prune<'b, 'a>(Want, &'b Builder<'a>);

impl<'de> DeserializeSeed<'de> for Prune<'_, 'de> {
    type Value = Json<'de>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Json<'de>, D::Error> {
        d.deserialize_any(PruneVisitor(self.0, self.1))
    }
}

struct PruneVisitor<'b, 'a>(Want, &'b Builder<'a>);

impl<'de> Visitor<'de> for PruneVisitor<'_, 'de> {
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
        Ok(Json::Str(v))
    }
    // A string with escapes, unescaped by the parser into a scratch buffer: copied to the arena.
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Json<'de>, E> {
        Ok(Json::Str(self.1.arena.alloc_str(v)))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Json<'de>, E> {
        Ok(Json::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<Json<'de>, E> {
        Ok(Json::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Json<'de>, D::Error> {
        Prune(self.0, self.1).deserialize(d)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json<'de>, A::Error> {
        let start = self.1.items.borrow().len();
        while let Some(v) = seq.next_element_seed(Prune(self.0, self.1))? {
            self.1.items.borrow_mut().push(v);
        }
        Ok(Json::Array(self.1.finish(&self.1.items, start)))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json<'de>, A::Error> {
        let start = self.1.entries.borrow().len();
        while let Some(key) = map.next_key_seed(Key(self.1.arena))? {
            let want = match self.0 {
                Want::All => Some(Want::All),
                Want::Fields(fields) => fields
                    .iter()
                    .find(|(name, _)| *name == key)
                    .map(|(_, w)| *w),
            };
            match want {
                Some(w) => {
                    let v = map.next_value_seed(Prune(w, self.1))?;
                    self.1.entries.borrow_mut().push((key, v));
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Json::Object(self.1.finish(&self.1.entries, start)))
    }
}

struct Key<'a>(&'a Bump);

impl<'de> DeserializeSeed<'de> for Key<'de> {
    type Value = &'de str;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<&'de str, D::Error> {
        d.deserialize_str(KeyVisitor(self.0))
    }
}

struct KeyVisitor<'a>(&'a Bump);

impl<'de> Visitor<'de> for KeyVisitor<'de> {
    type Value = &'de str;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string key")
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<&'de str, E> {
        Ok(v)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<&'de str, E> {
        Ok(self.0.alloc_str(v))
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
        let arena = Bump::new();
        let j = parse_pruned(body, OUTER, &arena).unwrap();
        let expected = json!({"a": {"x": [1, "s"]}, "list": [{"keep": "k"}, "odd", 5]});
        assert_eq!(j, Json::from_value(&expected, &arena));
    }

    #[test]
    fn borrows_plain_strings_and_unescapes_others() {
        let body = br#"{"k": "plain", "e": "tab\there", "u\u0069d": "x"}"#;
        let arena = Bump::new();
        let j = parse(body, &arena).unwrap();
        // Borrowed: the very bytes of the body.
        let plain = j.get("k").and_then(Json::as_str).unwrap();
        assert!(body.as_ptr_range().contains(&plain.as_ptr()));
        assert_eq!(j.get("e").and_then(Json::as_str), Some("tab\there"));
        assert_eq!(j.get("uid").and_then(Json::as_str), Some("x"));
    }

    #[test]
    fn invalid_utf8_is_rejected_only_where_it_is_read() {
        let skipped = b"{\"keep\": \"k\", \"drop\": \"\xff\"}";
        let arena = Bump::new();
        let j = parse_pruned(skipped, INNER, &arena).unwrap();
        assert_eq!(j.get("keep").and_then(Json::as_str), Some("k"));
        let kept = b"{\"keep\": \"\xff\"}";
        assert!(parse_pruned(kept, INNER, &arena).is_err());
        assert!(parse(b"\"\xff\"", &arena).is_err());
    }

    #[test]
    fn rejects_invalid_json() {
        let arena = Bump::new();
        assert!(parse(b"{\"a\": ", &arena).is_err());
        assert!(parse(b"{} trailing", &arena).is_err());
        assert!(parse(b"", &arena).is_err());
        assert_eq!(parse(b"\"s\"", &arena).unwrap().type_name(), "a string");
    }
}
