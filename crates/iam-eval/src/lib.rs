//! A small IAM policy evaluator: enough of IAM's logic to answer "may this principal do this
//! action on this resource with this request context" for trust policies and identity
//! policies. It is how hatrack's tests check who can assume a generated role (moto does not
//! evaluate trust), and how the operator's own IAM policy is tested.
//!
//! Evaluation follows IAM: an explicit Deny wins, else any Allow allows, else implicit deny.
//! Supported condition operators: String*, Arn*, Bool, Null, with `ForAnyValue:`/`ForAllValues:`
//! and `...IfExists`. An unsupported operator is an error, never a silent match.

use std::collections::BTreeMap;

use serde_json::Value;

use hatrack_core::policy::wildcard;

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// `{"Federated": arn}` (web identity).
    Federated(String),
    /// `{"Service": "pods.eks.amazonaws.com"}`.
    Service(String),
    /// `{"AWS": arn}`.
    Aws(String),
}

/// One request to evaluate.
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// For trust policies; `None` for identity policies (the principal is the policy's owner).
    pub principal: Option<Principal>,
    pub action: String,
    /// `None` for trust policies (the resource is the role itself).
    pub resource: Option<String>,
    /// Condition keys (compared case-insensitively, as IAM does) → values.
    pub context: BTreeMap<String, Vec<String>>,
}

impl Request {
    pub fn with(mut self, key: &str, value: &str) -> Self {
        self.context
            .entry(key.to_ascii_lowercase())
            .or_default()
            .push(value.to_string());
        self
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allow,
    ExplicitDeny,
    ImplicitDeny,
}

/// Evaluates a policy document for a request.
pub fn evaluate(doc: &Value, req: &Request) -> Result<Decision, String> {
    let statements: Vec<&Value> = match doc.get("Statement") {
        Some(Value::Array(items)) => items.iter().collect(),
        Some(s @ Value::Object(_)) => vec![s],
        _ => return Err("policy has no Statement".into()),
    };
    let mut allowed = false;
    for st in statements {
        if statement_applies(st, req)? {
            match st.get("Effect").and_then(Value::as_str) {
                Some("Deny") => return Ok(Decision::ExplicitDeny),
                Some("Allow") => allowed = true,
                other => return Err(format!("bad Effect {other:?}")),
            }
        }
    }
    Ok(if allowed {
        Decision::Allow
    } else {
        Decision::ImplicitDeny
    })
}

/// Whether every statement-level match (principal, action, resource, conditions) holds.
fn statement_applies(st: &Value, req: &Request) -> Result<bool, String> {
    if let Some(principal) = &req.principal {
        let listed = match (st.get("Principal"), st.get("NotPrincipal")) {
            (Some(p), None) => principal_listed(p, principal),
            (None, Some(p)) => !principal_listed(p, principal),
            _ => false,
        };
        if !listed {
            return Ok(false);
        }
    }
    let action_hit = |v: &Value| {
        strings(v)
            .iter()
            .any(|p| wildcard::matches(p, &req.action, true))
    };
    let action_ok = match (st.get("Action"), st.get("NotAction")) {
        (Some(a), None) => action_hit(a),
        (None, Some(a)) => !action_hit(a),
        _ => false,
    };
    if !action_ok {
        return Ok(false);
    }
    if let Some(resource) = &req.resource {
        let hit = |v: &Value| {
            strings(v)
                .iter()
                .any(|p| wildcard::matches(p, resource, false))
        };
        let ok = match (st.get("Resource"), st.get("NotResource")) {
            (Some(r), None) => hit(r),
            (None, Some(r)) => !hit(r),
            _ => false,
        };
        if !ok {
            return Ok(false);
        }
    }
    match st.get("Condition") {
        None => Ok(true),
        Some(Value::Object(ops)) => {
            for (op, block) in ops {
                let Some(keys) = block.as_object() else {
                    return Err(format!("condition {op} is not an object"));
                };
                for (key, expected) in keys {
                    if !condition_holds(op, key, &strings(expected), req)? {
                        return Ok(false);
                    }
                }
            }
            Ok(true)
        }
        Some(_) => Err("Condition is not an object".into()),
    }
}

fn principal_listed(p: &Value, principal: &Principal) -> bool {
    if p.as_str() == Some("*") {
        return true;
    }
    let (kind, id) = match principal {
        Principal::Federated(id) => ("Federated", id),
        Principal::Service(id) => ("Service", id),
        Principal::Aws(id) => ("AWS", id),
    };
    p.get(kind)
        .map(|v| strings(v).iter().any(|x| x == "*" || x == id))
        .unwrap_or(false)
}

fn strings(v: &Value) -> Vec<String> {
    match v {
        Value::Array(items) => items.iter().map(scalar).collect(),
        other => vec![scalar(other)],
    }
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn condition_holds(
    op: &str,
    key: &str,
    expected: &[String],
    req: &Request,
) -> Result<bool, String> {
    let (set_op, rest) = if let Some(r) = op.strip_prefix("ForAnyValue:") {
        (Some(true), r)
    } else if let Some(r) = op.strip_prefix("ForAllValues:") {
        (Some(false), r)
    } else {
        (None, op)
    };
    let (base, if_exists) = match rest.strip_suffix("IfExists") {
        Some(b) => (b, true),
        None => (rest, false),
    };
    let actual = req.context.get(&key.to_ascii_lowercase());
    if base == "Null" {
        let want_absent = expected.iter().any(|e| e == "true");
        return Ok(actual.is_none() == want_absent);
    }
    let (negated, matcher): (bool, fn(&str, &str) -> bool) = match base {
        "StringEquals" | "ArnEquals" => (false, |e, a| e == a),
        "StringNotEquals" | "ArnNotEquals" => (true, |e, a| e == a),
        "StringEqualsIgnoreCase" => (false, |e, a| e.eq_ignore_ascii_case(a)),
        "StringNotEqualsIgnoreCase" => (true, |e, a| e.eq_ignore_ascii_case(a)),
        "StringLike" | "ArnLike" => (false, |e, a| wildcard::matches(e, a, false)),
        "StringNotLike" | "ArnNotLike" => (true, |e, a| wildcard::matches(e, a, false)),
        "Bool" => (false, |e, a| e.eq_ignore_ascii_case(a)),
        other => {
            return Err(format!(
                "condition operator {other} is not supported by this evaluator"
            ));
        }
    };
    let value_matches = |a: &String| expected.iter().any(|e| matcher(e, a));
    let Some(values) = actual.filter(|v| !v.is_empty()) else {
        // A missing key: IfExists and negated operators hold, ForAllValues holds vacuously.
        return Ok(if_exists || negated || set_op == Some(false));
    };
    Ok(match set_op {
        Some(true) => values.iter().any(value_matches) != negated,
        Some(false) => values.iter().all(|a| value_matches(a) != negated),
        None => values.iter().any(value_matches) != negated,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn s3_request(action: &str, resource: &str) -> Request {
        Request {
            action: action.into(),
            resource: Some(resource.into()),
            ..Request::default()
        }
    }

    #[test]
    fn explicit_deny_beats_allow() {
        let doc = json!({"Statement":[
            {"Effect":"Allow","Action":"s3:*","Resource":"*"},
            {"Effect":"Deny","Action":"s3:DeleteObject","Resource":"*"}]});
        assert_eq!(
            evaluate(&doc, &s3_request("s3:GetObject", "arn:aws:s3:::b/k")).unwrap(),
            Decision::Allow
        );
        assert_eq!(
            evaluate(&doc, &s3_request("s3:deleteobject", "arn:aws:s3:::b/k")).unwrap(),
            Decision::ExplicitDeny
        );
        assert_eq!(
            evaluate(&doc, &s3_request("ec2:RunInstances", "*")).unwrap(),
            Decision::ImplicitDeny
        );
    }

    #[test]
    fn not_action_and_not_resource() {
        let doc = json!({"Statement":{"Effect":"Allow","NotAction":"iam:*","NotResource":"arn:aws:s3:::secret/*"}});
        assert_eq!(
            evaluate(&doc, &s3_request("s3:GetObject", "arn:aws:s3:::b/k")).unwrap(),
            Decision::Allow
        );
        assert_eq!(
            evaluate(&doc, &s3_request("iam:CreateRole", "*")).unwrap(),
            Decision::ImplicitDeny
        );
        assert_eq!(
            evaluate(&doc, &s3_request("s3:GetObject", "arn:aws:s3:::secret/k")).unwrap(),
            Decision::ImplicitDeny
        );
    }

    #[test]
    fn conditions_with_missing_keys() {
        let doc = json!({"Statement":{"Effect":"Allow","Action":"s3:*","Resource":"*",
            "Condition":{"StringEquals":{"aws:RequestTag/team":"a"},"StringNotEquals":{"aws:PrincipalTag/x":"y"}}}});
        let req = s3_request("s3:GetObject", "*");
        assert_eq!(evaluate(&doc, &req).unwrap(), Decision::ImplicitDeny);
        assert_eq!(
            evaluate(&doc, &req.clone().with("aws:RequestTag/team", "a")).unwrap(),
            Decision::Allow
        );
        assert_eq!(
            evaluate(&doc, &req.clone().with("aws:RequestTag/team", "b")).unwrap(),
            Decision::ImplicitDeny
        );
        assert_eq!(
            evaluate(
                &doc,
                &req.with("aws:requesttag/TEAM", "a")
                    .with("aws:PrincipalTag/x", "y")
            )
            .unwrap(),
            Decision::ImplicitDeny
        );
    }

    #[test]
    fn set_operators_and_null() {
        let doc = json!({"Statement":{"Effect":"Allow","Action":"iam:TagRole","Resource":"*",
            "Condition":{"ForAllValues:StringLike":{"aws:TagKeys":["team","env"]},"Null":{"aws:RequestTag/owner":"false"}}}});
        let req = s3_request("iam:TagRole", "*").with("aws:RequestTag/owner", "me");
        assert_eq!(
            evaluate(&doc, &req.clone().with("aws:TagKeys", "team")).unwrap(),
            Decision::Allow
        );
        assert_eq!(
            evaluate(
                &doc,
                &req.with("aws:TagKeys", "team")
                    .with("aws:TagKeys", "secret")
            )
            .unwrap(),
            Decision::ImplicitDeny
        );
        let no_owner = s3_request("iam:TagRole", "*").with("aws:TagKeys", "team");
        assert_eq!(evaluate(&doc, &no_owner).unwrap(), Decision::ImplicitDeny);
    }

    #[test]
    fn unknown_operator_is_an_error() {
        let doc = json!({"Statement":{"Effect":"Allow","Action":"*","Resource":"*","Condition":{"DateGreaterThan":{"aws:CurrentTime":"2020-01-01"}}}});
        assert!(
            evaluate(
                &doc,
                &s3_request("s3:GetObject", "*").with("aws:CurrentTime", "x")
            )
            .is_err()
        );
    }

    #[test]
    fn principals_are_matched_by_kind() {
        let doc = json!({"Statement":{"Effect":"Allow","Principal":{"Service":"pods.eks.amazonaws.com"},"Action":"sts:AssumeRole"}});
        let mut req = Request {
            action: "sts:AssumeRole".into(),
            principal: Some(Principal::Service("pods.eks.amazonaws.com".into())),
            ..Request::default()
        };
        assert_eq!(evaluate(&doc, &req).unwrap(), Decision::Allow);
        req.principal = Some(Principal::Aws("pods.eks.amazonaws.com".into()));
        assert_eq!(evaluate(&doc, &req).unwrap(), Decision::ImplicitDeny);
    }
}
