//! The five operations, each counted per name (errors included) and each answering 404 for
//! a cluster the stand-in does not serve.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::wire::{
    error, full, invalid, is_k8s_name, is_role_arn, new_external_id, new_id, not_found, now,
    parse_body, query_params, string_field, summary, tags_problem,
};
use super::{Inner, Shared, StoredAssociation};

/// The state, locked, with the call to `op` counted; a request for a cluster the stand-in
/// does not serve is answered here.
fn served<'a>(
    inner: &'a Mutex<Inner>,
    op: &str,
    cluster: &str,
) -> Result<MutexGuard<'a, Inner>, Response> {
    let mut inner = inner.lock().unwrap();
    *inner.calls.entry(op.to_string()).or_default() += 1;
    if !inner.clusters.iter().any(|c| c == cluster) {
        return Err(error(
            StatusCode::NOT_FOUND,
            "ResourceNotFoundException",
            &format!("No cluster found for name: {cluster}."),
        ));
    }
    Ok(inner)
}
pub(super) async fn create(
    State((inner, account, region)): State<Shared>,
    Path(cluster): Path<String>,
    body: Bytes,
) -> Response {
    let mut inner = match served(&inner, "CreatePodIdentityAssociation", &cluster) {
        Ok(inner) => inner,
        Err(response) => return response,
    };
    let body = match parse_body(&body) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let fields = (|| {
        Ok::<_, Response>((
            string_field(&body, "namespace")?,
            string_field(&body, "serviceAccount")?,
            string_field(&body, "roleArn")?,
            string_field(&body, "clientRequestToken")?,
            string_field(&body, "targetRoleArn")?,
        ))
    })();
    let (namespace, service_account, role_arn, token, target_role_arn) = match fields {
        Ok(f) => f,
        Err(r) => return r,
    };
    let (Some(namespace), Some(service_account), Some(role_arn)) =
        (namespace, service_account, role_arn)
    else {
        return invalid("namespace, serviceAccount and roleArn are required");
    };
    if !is_k8s_name(&namespace, 63) || namespace.contains('.') {
        return invalid(&format!("namespace {namespace:?} is not a namespace name"));
    }
    if !is_k8s_name(&service_account, 253) {
        return invalid(&format!(
            "serviceAccount {service_account:?} is not a service account name"
        ));
    }
    if !is_role_arn(&role_arn) {
        return invalid(&format!("roleArn {role_arn:?} is not an IAM role ARN"));
    }
    if let Some(t) = &target_role_arn
        && !is_role_arn(t)
    {
        return invalid(&format!("targetRoleArn {t:?} is not an IAM role ARN"));
    }
    let tags: BTreeMap<String, String> = match body.get("tags") {
        None | Some(Value::Null) => BTreeMap::new(),
        Some(t) => match serde_json::from_value(t.clone()) {
            Ok(t) => t,
            Err(_) => return invalid("tags must map strings to strings"),
        },
    };
    if let Some(problem) = tags_problem(&tags) {
        return invalid(&problem);
    }
    // A retried create (same token) gets the association the first one made.
    if let Some(id) = token.as_ref().and_then(|t| inner.tokens.get(t))
        && let Some(a) = inner.associations.iter().find(|a| &a.id == id)
    {
        if a.namespace == namespace && a.service_account == service_account {
            return axum::Json(json!({"association": full(a)})).into_response();
        }
        return invalid("clientRequestToken was used with different parameters");
    }
    if let Some(existing) = inner.associations.iter().find(|a| {
        a.cluster == cluster && a.namespace == namespace && a.service_account == service_account
    }) {
        return error(
            StatusCode::CONFLICT,
            "ResourceInUseException",
            &format!("Association already exists: {}", existing.id),
        );
    }
    let id = new_id();
    let at = now();
    let a = StoredAssociation {
        arn: format!("arn:aws:eks:{region}:{account}:podidentityassociation/{cluster}/{id}"),
        cluster,
        namespace,
        service_account,
        role_arn,
        id: id.clone(),
        tags,
        external_id: target_role_arn.as_ref().map(|_| new_external_id()),
        target_role_arn,
        created_at: at,
        modified_at: at,
    };
    let response = json!({"association": full(&a)});
    inner.associations.push(a);
    if let Some(t) = token {
        inner.tokens.insert(t, id);
    }
    axum::Json(response).into_response()
}

pub(super) async fn describe(
    State((inner, _, _)): State<Shared>,
    Path((cluster, id)): Path<(String, String)>,
) -> Response {
    let inner = match served(&inner, "DescribePodIdentityAssociation", &cluster) {
        Ok(inner) => inner,
        Err(response) => return response,
    };
    match inner
        .associations
        .iter()
        .find(|a| a.cluster == cluster && a.id == id)
    {
        Some(a) => axum::Json(json!({"association": full(a)})).into_response(),
        None => not_found(&id),
    }
}

pub(super) async fn list(
    State((inner, _, _)): State<Shared>,
    Path(cluster): Path<String>,
    uri: Uri,
) -> Response {
    let inner = match served(&inner, "ListPodIdentityAssociations", &cluster) {
        Ok(inner) => inner,
        Err(response) => return response,
    };
    let q = query_params(&uri);
    let max = match q.get("maxResults") {
        None => 100,
        Some(m) => match m.parse::<usize>() {
            Ok(n) if (1..=100).contains(&n) => n,
            _ => return invalid("maxResults must be between 1 and 100"),
        },
    };
    let matching: Vec<&StoredAssociation> = inner
        .associations
        .iter()
        .filter(|a| a.cluster == cluster)
        .filter(|a| q.get("namespace").is_none_or(|n| &a.namespace == n))
        .filter(|a| {
            q.get("serviceAccount")
                .is_none_or(|s| &a.service_account == s)
        })
        .collect();
    // The token names the last id of the previous page (opaque to clients).
    let start = match q.get("nextToken") {
        None => 0,
        Some(t) => match t
            .strip_prefix("after.")
            .and_then(|id| matching.iter().position(|a| a.id == id))
        {
            Some(i) => i + 1,
            None => return invalid("The nextToken is not valid"),
        },
    };
    let page: Vec<&StoredAssociation> = matching.iter().skip(start).take(max).copied().collect();
    let more = start + page.len() < matching.len();
    let mut body = json!({"associations": page.iter().map(|a| summary(a)).collect::<Vec<_>>()});
    if more && let Some(last) = page.last() {
        body["nextToken"] = json!(format!("after.{}", last.id));
    }
    axum::Json(body).into_response()
}

pub(super) async fn update(
    State((inner, _, _)): State<Shared>,
    Path((cluster, id)): Path<(String, String)>,
    _headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut inner = match served(&inner, "UpdatePodIdentityAssociation", &cluster) {
        Ok(inner) => inner,
        Err(response) => return response,
    };
    let body = match parse_body(&body) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let role_arn = match string_field(&body, "roleArn") {
        Ok(r) => r,
        Err(r) => return r,
    };
    if let Some(r) = &role_arn
        && !is_role_arn(r)
    {
        return invalid(&format!("roleArn {r:?} is not an IAM role ARN"));
    }
    let target_role_arn = match string_field(&body, "targetRoleArn") {
        Ok(r) => r,
        Err(r) => return r,
    };
    if let Some(t) = &target_role_arn
        && !t.is_empty()
        && !is_role_arn(t)
    {
        return invalid(&format!("targetRoleArn {t:?} is not an IAM role ARN"));
    }
    let Some(a) = inner
        .associations
        .iter_mut()
        .find(|a| a.cluster == cluster && a.id == id)
    else {
        return not_found(&id);
    };
    if let Some(r) = role_arn {
        a.role_arn = r;
    }
    match target_role_arn {
        // Absent: unchanged. Empty: the target (and its external id) removed.
        None => {}
        Some(t) if t.is_empty() => {
            a.target_role_arn = None;
            a.external_id = None;
        }
        Some(t) => {
            if a.external_id.is_none() {
                a.external_id = Some(new_external_id());
            }
            a.target_role_arn = Some(t);
        }
    }
    a.modified_at = now();
    axum::Json(json!({"association": full(a)})).into_response()
}

pub(super) async fn delete(
    State((inner, _, _)): State<Shared>,
    Path((cluster, id)): Path<(String, String)>,
) -> Response {
    let mut inner = match served(&inner, "DeletePodIdentityAssociation", &cluster) {
        Ok(inner) => inner,
        Err(response) => return response,
    };
    match inner
        .associations
        .iter()
        .position(|a| a.cluster == cluster && a.id == id)
    {
        Some(i) => {
            let a = inner.associations.remove(i);
            axum::Json(json!({"association": full(&a)})).into_response()
        }
        None => not_found(&id),
    }
}
