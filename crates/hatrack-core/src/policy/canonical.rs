//! The canonical form of a policy document, and comparison through it; decoding a document
//! as IAM returns it.

use serde_json::{Map, Value};

/// The canonical form of a policy document, for comparison: one-element lists and strings are
/// the same, list order and statement order do not matter, duplicates are dropped, booleans and
/// numbers in conditions compare as their strings, and object keys are sorted.
pub fn canonical(doc: &Value) -> Value {
    match doc {
        Value::Object(obj) => {
            let mut out = Map::new();
            let mut keys: Vec<&String> = obj.keys().collect();
            keys.sort();
            for key in keys {
                let v = &obj[key];
                let cv = if key == "Statement" {
                    let mut statements: Vec<Value> = match v {
                        Value::Array(items) => items.iter().map(canonical_statement).collect(),
                        other => vec![canonical_statement(other)],
                    };
                    sort_dedup(&mut statements);
                    Value::Array(statements)
                } else {
                    canonical_plain(v)
                };
                out.insert(key.clone(), cv);
            }
            Value::Object(out)
        }
        other => canonical_plain(other),
    }
}

fn canonical_statement(st: &Value) -> Value {
    let Value::Object(obj) = st else {
        return canonical_plain(st);
    };
    let mut out = Map::new();
    let mut keys: Vec<&String> = obj.keys().collect();
    keys.sort();
    for key in keys {
        let v = &obj[key];
        let cv = match key.as_str() {
            "Action" | "NotAction" | "Resource" | "NotResource" => set_of_strings(v),
            "Principal" | "NotPrincipal" => match v {
                Value::Object(p) => map_of_sets(p),
                other => canonical_plain(other),
            },
            "Condition" => match v {
                Value::Object(ops) => {
                    let mut o = Map::new();
                    let mut names: Vec<&String> = ops.keys().collect();
                    names.sort();
                    for op in names {
                        let block = match &ops[op] {
                            Value::Object(keys) => map_of_sets(keys),
                            other => canonical_plain(other),
                        };
                        o.insert(op.clone(), block);
                    }
                    Value::Object(o)
                }
                other => canonical_plain(other),
            },
            _ => canonical_plain(v),
        };
        out.insert(key.clone(), cv);
    }
    Value::Object(out)
}

fn map_of_sets(m: &Map<String, Value>) -> Value {
    let mut o = Map::new();
    let mut keys: Vec<&String> = m.keys().collect();
    keys.sort();
    for k in keys {
        o.insert(k.clone(), set_of_strings(&m[k]));
    }
    Value::Object(o)
}

fn scalar_string(v: &Value) -> Value {
    match v {
        Value::Bool(b) => Value::String(b.to_string()),
        Value::Number(n) => Value::String(n.to_string()),
        other => canonical_plain(other),
    }
}

fn set_of_strings(v: &Value) -> Value {
    let mut items: Vec<Value> = match v {
        Value::Array(items) => items.iter().map(scalar_string).collect(),
        other => vec![scalar_string(other)],
    };
    sort_dedup(&mut items);
    Value::Array(items)
}

fn canonical_plain(v: &Value) -> Value {
    match v {
        Value::Object(obj) => {
            let mut out = Map::new();
            let mut keys: Vec<&String> = obj.keys().collect();
            keys.sort();
            for k in keys {
                out.insert(k.clone(), canonical_plain(&obj[k]));
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(canonical_plain).collect()),
        other => other.clone(),
    }
}

fn sort_dedup(items: &mut Vec<Value>) {
    items.sort_by_cached_key(|v| v.to_string());
    items.dedup();
}

/// Whether two policy documents say the same thing (see [`canonical`]).
pub fn equivalent(a: &Value, b: &Value) -> bool {
    canonical(a) == canonical(b)
}

/// Decodes a policy document as IAM returns it: URL-encoded JSON (moto and AWS both do).
pub fn decode_document(encoded: &str) -> Result<Value, String> {
    let decoded = percent_encoding::percent_decode_str(encoded)
        .decode_utf8()
        .map_err(|e| format!("policy document is not valid UTF-8 after URL-decoding: {e}"))?;
    serde_json::from_str(&decoded).map_err(|e| format!("policy document is not valid JSON: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn canonical_form_ignores_order_and_singletons() {
        let a = json!({"Version":"2012-10-17","Statement":[
            {"Effect":"Allow","Action":["s3:PutObject","s3:GetObject"],"Resource":"arn:aws:s3:::b/*"},
            {"Effect":"Deny","Action":"iam:*","Resource":"*","Condition":{"Bool":{"aws:SecureTransport":false}}}]});
        let b = json!({"Statement":[
            {"Resource":["*"],"Action":["iam:*"],"Effect":"Deny","Condition":{"Bool":{"aws:SecureTransport":"false"}}},
            {"Resource":["arn:aws:s3:::b/*"],"Action":["s3:GetObject","s3:PutObject","s3:GetObject"],"Effect":"Allow"}],"Version":"2012-10-17"});
        assert!(equivalent(&a, &b));
    }

    #[test]
    fn canonical_form_sees_real_differences() {
        let a = json!({"Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":"*"}]});
        for b in [
            json!({"Statement":[{"Effect":"Deny","Action":"s3:GetObject","Resource":"*"}]}),
            json!({"Statement":[{"Effect":"Allow","Action":"s3:PutObject","Resource":"*"}]}),
            json!({"Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":"arn:aws:s3:::b"}]}),
            json!({"Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":"*","Condition":{"Bool":{"aws:SecureTransport":"true"}}}]}),
        ] {
            assert!(!equivalent(&a, &b), "{b}");
        }
    }

    #[test]
    fn decodes_url_encoded_documents() {
        let v = decode_document("%7B%22Statement%22%3A%5B%5D%7D").unwrap();
        assert_eq!(v, json!({"Statement": []}));
        assert!(decode_document("%7Bnot json").is_err());
    }
}
