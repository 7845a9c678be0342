//! Reading and checking a policy document in AWS's own JSON form: every problem, with its
//! field.

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
}
