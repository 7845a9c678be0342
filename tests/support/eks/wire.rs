//! The stand-in's side of the restJson1 wire: error responses, association shapes (full and
//! summary), the checks EKS makes of names, ARNs and tags, new ids, and body and query parsing.

use std::collections::{BTreeMap, HashMap};

use axum::body::Bytes;
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::StoredAssociation;

pub(super) fn error(status: StatusCode, code: &str, message: &str) -> Response {
    // restJson1: the code in the x-amzn-ErrorType header, the message in the body.
    (
        status,
        [("x-amzn-ErrorType", code.to_string())],
        axum::Json(json!({"message": message})),
    )
        .into_response()
}

pub(super) fn invalid(message: &str) -> Response {
    error(
        StatusCode::BAD_REQUEST,
        "InvalidParameterException",
        message,
    )
}

pub(super) fn now() -> f64 {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    // EKS timestamps are epoch seconds with milliseconds.
    (d.as_millis() as f64) / 1000.0
}

pub(super) fn new_id() -> String {
    use rand::Rng;
    const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    let tail: String = (0..17)
        .map(|_| CHARS[rng.random_range(0..CHARS.len())] as char)
        .collect();
    format!("a-{tail}")
}

/// An external id as EKS makes them (a UUID).
pub(super) fn new_external_id() -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    let hex = |n: usize, rng: &mut rand::rngs::ThreadRng| -> String {
        (0..n)
            .map(|_| char::from_digit(rng.random_range(0..16), 16).unwrap_or('0'))
            .collect()
    };
    format!(
        "{}-{}-4{}-a{}-{}",
        hex(8, &mut rng),
        hex(4, &mut rng),
        hex(3, &mut rng),
        hex(3, &mut rng),
        hex(12, &mut rng)
    )
}

pub(super) fn full(a: &StoredAssociation) -> Value {
    let mut v = full_without_target(a);
    if let (Some(t), Some(e)) = (&a.target_role_arn, &a.external_id) {
        v["targetRoleArn"] = json!(t);
        v["externalId"] = json!(e);
    }
    v
}

pub(super) fn full_without_target(a: &StoredAssociation) -> Value {
    json!({
        "clusterName": a.cluster,
        "namespace": a.namespace,
        "serviceAccount": a.service_account,
        "roleArn": a.role_arn,
        "associationArn": a.arn,
        "associationId": a.id,
        "tags": a.tags,
        "createdAt": a.created_at,
        "modifiedAt": a.modified_at,
        "disableSessionTags": false,
    })
}

pub(super) fn summary(a: &StoredAssociation) -> Value {
    // Summaries carry neither the role nor the tags: readers Describe for those.
    json!({
        "clusterName": a.cluster,
        "namespace": a.namespace,
        "serviceAccount": a.service_account,
        "associationArn": a.arn,
        "associationId": a.id,
    })
}

/// A Kubernetes name of at most `max` characters (namespace: DNS label; SA: DNS subdomain).
pub(super) fn is_k8s_name(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.ends_with(|c: char| c.is_ascii_alphanumeric())
}

pub(super) fn is_role_arn(s: &str) -> bool {
    let parts: Vec<&str> = s.splitn(6, ':').collect();
    parts.len() == 6
        && parts[0] == "arn"
        && parts[1].starts_with("aws")
        && parts[2] == "iam"
        && parts[3].is_empty()
        && parts[4].len() == 12
        && parts[4].chars().all(|c| c.is_ascii_digit())
        && parts[5].starts_with("role/")
        && parts[5].len() > "role/".len()
}

pub(super) fn tags_problem(tags: &BTreeMap<String, String>) -> Option<String> {
    if tags.len() > 50 {
        return Some("tags: at most 50 tags".into());
    }
    for (k, v) in tags {
        if k.is_empty() || k.len() > 128 || v.len() > 256 {
            return Some(format!(
                "tag {k:?}: keys are 1-128 characters, values at most 256"
            ));
        }
        if k.to_ascii_lowercase().starts_with("aws:") {
            return Some(format!("tag {k:?}: the aws: prefix is reserved"));
        }
    }
    None
}

pub(super) fn no_cluster(name: &str) -> Response {
    error(
        StatusCode::NOT_FOUND,
        "ResourceNotFoundException",
        &format!("No cluster found for name: {name}."),
    )
}

pub(super) fn parse_body(body: &Bytes) -> Result<serde_json::Map<String, Value>, Response> {
    if body.is_empty() {
        return Ok(serde_json::Map::new());
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(error(
            StatusCode::BAD_REQUEST,
            "BadRequestException",
            "the request body is not a JSON object",
        )),
    }
}

pub(super) fn string_field(
    body: &serde_json::Map<String, Value>,
    field: &str,
) -> Result<Option<String>, Response> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(invalid(&format!("{field} must be a string"))),
    }
}

pub(super) fn not_found(id: &str) -> Response {
    error(
        StatusCode::NOT_FOUND,
        "ResourceNotFoundException",
        &format!("No Pod Identity Association found with ID: {id}"),
    )
}

pub(super) fn query_params(uri: &Uri) -> HashMap<String, String> {
    uri.query()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            let decode = |s: &str| {
                percent_encoding::percent_decode_str(&s.replace('+', " "))
                    .decode_utf8_lossy()
                    .into_owned()
            };
            (decode(k), decode(v))
        })
        .collect()
}
