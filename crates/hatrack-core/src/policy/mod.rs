//! IAM policy documents: reading and checking them in AWS's own JSON form and putting them in a
//! canonical form for comparison. Guardrails match action patterns with [`wildcard`] and
//! [`intersect`]; [`eval`] is an IAM evaluator that only tests use (who may assume a role).

pub mod intersect;
pub mod wildcard;

use serde_json::{Map, Value};

/// Something wrong in a policy document, with where (`Statement[0].Effect`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct PolicyError {
    pub path: String,
    pub message: String,
}

fn perr(path: impl Into<String>, message: impl Into<String>) -> PolicyError {
    PolicyError {
        path: path.into(),
        message: message.into(),
    }
}

/// The kind of document, which decides which elements are allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DocumentKind {
    /// A permission (identity) policy: no Principal, Resource required.
    Identity,
    /// A trust (resource) policy: Principal required, no Resource.
    Trust,
}

/// One statement, read out of a document (values normalised to lists).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    pub sid: Option<String>,
    pub allow: bool,
    /// `Action` patterns, or `NotAction` patterns when `not_action` is set.
    pub actions: Vec<String>,
    pub not_action: bool,
    pub resources: Vec<String>,
    pub not_resource: bool,
}

/// Checks a document of the given kind and returns its statements. Every problem found is
/// reported, not just the first.
pub fn parse(doc: &Value, kind: DocumentKind) -> Result<Vec<Statement>, Vec<PolicyError>> {
    let mut errors = Vec::new();
    let Some(obj) = doc.as_object() else {
        return Err(vec![perr(
            "",
            format!(
                "a policy document must be a JSON object, got {}",
                crate::json_type::name(doc)
            ),
        )]);
    };
    for key in obj.keys() {
        if !matches!(key.as_str(), "Version" | "Id" | "Statement") {
            errors.push(perr(
                key.clone(),
                "unknown element; a policy has Version, Id and Statement",
            ));
        }
    }
    // IAM reads a missing Version as 2008-10-17, which silently disables policy variables;
    // IAM-compatible servers refuse it. Require the current version.
    match obj.get("Version") {
        Some(Value::String(v)) if v == "2012-10-17" => {}
        None => errors.push(perr(
            "Version",
            "Version is required and must be \"2012-10-17\"",
        )),
        Some(other) => errors.push(perr(
            "Version",
            format!("Version must be \"2012-10-17\", got {other}"),
        )),
    }
    let statements: Vec<&Value> = match obj.get("Statement") {
        Some(Value::Array(items)) if !items.is_empty() => items.iter().collect(),
        Some(s @ Value::Object(_)) => vec![s],
        Some(Value::Array(_)) => {
            errors.push(perr("Statement", "Statement must not be empty"));
            vec![]
        }
        Some(other) => {
            errors.push(perr(
                "Statement",
                format!(
                    "Statement must be an object or a list of objects, got {}",
                    crate::json_type::name(other)
                ),
            ));
            vec![]
        }
        None => {
            errors.push(perr("Statement", "Statement is required"));
            vec![]
        }
    };
    let mut out = Vec::new();
    for (i, st) in statements.into_iter().enumerate() {
        let path = format!("Statement[{i}]");
        match parse_statement(st, &path, kind) {
            Ok(s) => out.push(s),
            Err(mut e) => errors.append(&mut e),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

fn parse_statement(
    st: &Value,
    path: &str,
    kind: DocumentKind,
) -> Result<Statement, Vec<PolicyError>> {
    let mut errors = Vec::new();
    let Some(obj) = st.as_object() else {
        return Err(vec![perr(
            path,
            format!(
                "a statement must be an object, got {}",
                crate::json_type::name(st)
            ),
        )]);
    };
    for key in obj.keys() {
        let known = matches!(
            key.as_str(),
            "Sid"
                | "Effect"
                | "Action"
                | "NotAction"
                | "Resource"
                | "NotResource"
                | "Condition"
                | "Principal"
                | "NotPrincipal"
        );
        if !known {
            errors.push(perr(format!("{path}.{key}"), "unknown element; a statement has Sid, Effect, Action or NotAction, Resource or NotResource, Condition"));
        }
    }
    let sid = match obj.get("Sid") {
        None => None,
        Some(Value::String(s)) if s.chars().all(|c| c.is_ascii_alphanumeric()) => Some(s.clone()),
        Some(other) => {
            errors.push(perr(
                format!("{path}.Sid"),
                format!("Sid must be a string of letters and digits, got {other}"),
            ));
            None
        }
    };
    let allow = match obj.get("Effect") {
        Some(Value::String(e)) if e == "Allow" => true,
        Some(Value::String(e)) if e == "Deny" => false,
        Some(other) => {
            errors.push(perr(
                format!("{path}.Effect"),
                format!("Effect must be Allow or Deny, got {other}"),
            ));
            false
        }
        None => {
            errors.push(perr(
                format!("{path}.Effect"),
                "Effect is required (Allow or Deny)",
            ));
            false
        }
    };
    let (actions, not_action) = one_of(obj, path, "Action", "NotAction", true, &mut errors);
    for (j, a) in actions.iter().enumerate() {
        if let Err(m) = action_pattern(a) {
            let field = if not_action { "NotAction" } else { "Action" };
            errors.push(perr(format!("{path}.{field}[{j}]"), m));
        }
    }
    let (resources, not_resource) = match kind {
        DocumentKind::Identity => {
            for key in ["Principal", "NotPrincipal"] {
                if obj.contains_key(key) {
                    errors.push(perr(
                        format!("{path}.{key}"),
                        format!("{key} is not allowed in a permission policy"),
                    ));
                }
            }
            let r = one_of(obj, path, "Resource", "NotResource", true, &mut errors);
            for (j, res) in r.0.iter().enumerate() {
                if res != "*" && !res.starts_with("arn:") {
                    let field = if r.1 { "NotResource" } else { "Resource" };
                    errors.push(perr(
                        format!("{path}.{field}[{j}]"),
                        format!("Resource must be \"*\" or an ARN, got {res:?}"),
                    ));
                }
            }
            r
        }
        DocumentKind::Trust => {
            if !obj.contains_key("Principal") && !obj.contains_key("NotPrincipal") {
                errors.push(perr(
                    format!("{path}.Principal"),
                    "Principal is required in a trust policy",
                ));
            }
            (Vec::new(), false)
        }
    };
    if let Some(cond) = obj.get("Condition") {
        check_condition(cond, &format!("{path}.Condition"), &mut errors);
    }
    if errors.is_empty() {
        Ok(Statement {
            sid,
            allow,
            actions,
            not_action,
            resources,
            not_resource,
        })
    } else {
        Err(errors)
    }
}

/// Exactly one of two list-or-string elements (Action/NotAction, Resource/NotResource).
fn one_of(
    obj: &Map<String, Value>,
    path: &str,
    plain: &str,
    negated: &str,
    required: bool,
    errors: &mut Vec<PolicyError>,
) -> (Vec<String>, bool) {
    match (obj.get(plain), obj.get(negated)) {
        (Some(_), Some(_)) => {
            errors.push(perr(
                format!("{path}.{plain}"),
                format!("a statement has {plain} or {negated}, not both"),
            ));
            (Vec::new(), false)
        }
        (Some(v), None) => (string_list(v, &format!("{path}.{plain}"), errors), false),
        (None, Some(v)) => (string_list(v, &format!("{path}.{negated}"), errors), true),
        (None, None) => {
            if required {
                errors.push(perr(
                    format!("{path}.{plain}"),
                    format!("{plain} or {negated} is required"),
                ));
            }
            (Vec::new(), false)
        }
    }
}

fn string_list(v: &Value, path: &str, errors: &mut Vec<PolicyError>) -> Vec<String> {
    match v {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) if !items.is_empty() => {
            let mut out = Vec::new();
            for (i, item) in items.iter().enumerate() {
                match item {
                    Value::String(s) => out.push(s.clone()),
                    other => errors.push(perr(
                        format!("{path}[{i}]"),
                        format!("must be a string, got {}", crate::json_type::name(other)),
                    )),
                }
            }
            out
        }
        Value::Array(_) => {
            errors.push(perr(path, "must not be an empty list"));
            Vec::new()
        }
        other => {
            errors.push(perr(
                path,
                format!(
                    "must be a string or a list of strings, got {}",
                    crate::json_type::name(other)
                ),
            ));
            Vec::new()
        }
    }
}

/// `*` or `service:Action` (wildcards allowed in the action part and the service part).
fn action_pattern(a: &str) -> Result<(), String> {
    if a == "*" {
        return Ok(());
    }
    let Some((service, action)) = a.split_once(':') else {
        return Err(format!(
            "action must be \"*\" or \"service:Action\", got {a:?}"
        ));
    };
    let service_ok = !service.is_empty()
        && service
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-*?".contains(c));
    let action_ok = !action.is_empty()
        && action
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "*?-_".contains(c));
    if service_ok && action_ok {
        Ok(())
    } else {
        Err(format!(
            "action must be \"*\" or \"service:Action\", got {a:?}"
        ))
    }
}

fn check_condition(cond: &Value, path: &str, errors: &mut Vec<PolicyError>) {
    let Some(ops) = cond.as_object() else {
        errors.push(perr(
            path,
            "Condition must be an object of operator → {key: value}",
        ));
        return;
    };
    for (op, block) in ops {
        let Some(keys) = block.as_object() else {
            errors.push(perr(
                format!("{path}.{op}"),
                "must be an object of condition key → value",
            ));
            continue;
        };
        for (key, value) in keys {
            let ok = match value {
                Value::String(_) | Value::Bool(_) | Value::Number(_) => true,
                Value::Array(items) => items
                    .iter()
                    .all(|i| matches!(i, Value::String(_) | Value::Bool(_) | Value::Number(_))),
                _ => false,
            };
            if !ok {
                errors.push(perr(
                    format!("{path}.{op}.{key}"),
                    "condition value must be a string, boolean, number or a list of them",
                ));
            }
        }
    }
}

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

    fn identity_errors(doc: Value) -> Vec<String> {
        parse(&doc, DocumentKind::Identity)
            .err()
            .unwrap_or_default()
            .into_iter()
            .map(|e| e.to_string())
            .collect()
    }

    #[test]
    fn accepts_a_normal_policy() {
        let doc = json!({"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["s3:GetObject"],"Resource":"arn:aws:s3:::b/*","Condition":{"Bool":{"aws:SecureTransport":true}}}]});
        let st = parse(&doc, DocumentKind::Identity).unwrap();
        assert_eq!(st[0].actions, ["s3:GetObject"]);
        assert!(st[0].allow);
    }

    #[test]
    fn names_the_field_of_a_bad_effect() {
        let errs = identity_errors(
            json!({"Version":"2012-10-17","Statement":[{"Effect":"Perhaps","Action":"s3:*","Resource":"*"}]}),
        );
        assert_eq!(
            errs,
            [r#"Statement[0].Effect: Effect must be Allow or Deny, got "Perhaps""#]
        );
    }

    #[test]
    fn reports_every_problem() {
        let errs = identity_errors(
            json!({"Version":"2020","Statement":[{"Effect":"Allow","Action":"s3:*","NotAction":"x:y"},{"Effect":"Deny","Action":"nocolon","Resource":"bucket","Principal":"*"}]}),
        );
        let text = errs.join("\n");
        assert!(text.contains("Version must be"), "{text}");
        assert!(
            text.contains("Statement[0].Action: a statement has Action or NotAction, not both"),
            "{text}"
        );
        assert!(
            text.contains("Statement[0].Resource: Resource or NotResource is required"),
            "{text}"
        );
        assert!(text.contains("Statement[1].Action[0]"), "{text}");
        assert!(
            text.contains("Statement[1].Resource[0]: Resource must be"),
            "{text}"
        );
        assert!(
            text.contains("Statement[1].Principal: Principal is not allowed"),
            "{text}"
        );
    }

    #[test]
    fn rejects_non_object_documents_empty_statements_and_old_versions() {
        assert!(!identity_errors(json!("x")).is_empty());
        assert!(
            !identity_errors(
                json!({"Statement":{"Effect":"Allow","Action":"s3:*","Resource":"*"}})
            )
            .is_empty()
        );
        assert!(!identity_errors(json!({"Version":"2008-10-17","Statement":{"Effect":"Allow","Action":"s3:*","Resource":"*"}})).is_empty());
        assert!(!identity_errors(json!({"Statement":[]})).is_empty());
        assert!(!identity_errors(json!({"Version":"2012-10-17"})).is_empty());
    }

    #[test]
    fn trust_policies_need_a_principal() {
        let err = parse(
            &json!({"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"sts:AssumeRole"}}),
            DocumentKind::Trust,
        )
        .unwrap_err();
        assert_eq!(err[0].path, "Statement[0].Principal");
    }

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
