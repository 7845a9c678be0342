//! A stand-in for the five EKS Pod Identity association operations, which moto does not serve:
//! REST+JSON over HTTP on 127.0.0.1, shaped after the EKS API reference (eks-2017-11-01), so
//! the real `aws-sdk-eks` client (and hatrack's `Eks` edge) talks to it unchanged.
//!
//! Modelled: the request and response shapes of Create/Describe/List/Update/Delete
//! PodIdentityAssociation; association ids (`a-` + 17 lower-case letters and digits) and ARNs
//! (`arn:aws:eks:REGION:ACCOUNT:podidentityassociation/CLUSTER/ID`); one association per
//! (cluster, namespace, ServiceAccount), a second create failing with 409
//! `ResourceInUseException: Association already exists: <id>`; 404 `ResourceNotFoundException`
//! for an unknown cluster or association id; 400 `InvalidParameterException` for a missing or
//! malformed namespace, ServiceAccount or role ARN, bad tags, `maxResults` outside 1..=100 and
//! an unknown `nextToken`; `clientRequestToken` idempotency of creates; tags on create;
//! `targetRoleArn` (cross-account role chaining) on create and update, with the `externalId`
//! EKS makes for an association that has a target role (a UUID, kept while the association
//! has a target, dropped with it; an empty `targetRoleArn` on update removes the target), and
//! 400 for a malformed target role ARN.
//! Not modelled: authentication and IAM authorisation (no `iam:PassRole` check), whether the
//! role exists or trusts `pods.eks.amazonaws.com` (nor whether the target role trusts the role
//! with the external id: no credentials are ever issued), eventual consistency, throttling,
//! `disableSessionTags`/session `policy` (accepted, not used),
//! TagResource/UntagResource/ListTagsForResource, and add-on owned associations (`ownerArn`).
#![allow(dead_code)]
// Handlers return the error response itself; boxing it would only add noise here.
#![allow(clippy::result_large_err)]

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};

/// One association as the stand-in stores it.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredAssociation {
    pub cluster: String,
    pub namespace: String,
    pub service_account: String,
    pub role_arn: String,
    pub id: String,
    pub arn: String,
    pub tags: BTreeMap<String, String>,
    pub target_role_arn: Option<String>,
    pub external_id: Option<String>,
    pub created_at: f64,
    pub modified_at: f64,
}

#[derive(Default)]
struct Inner {
    clusters: Vec<String>,
    /// In creation order (List pages through this order).
    associations: Vec<StoredAssociation>,
    /// clientRequestToken → association id, for idempotent creates.
    tokens: HashMap<String, String>,
    /// Operation name → requests served (errors included).
    calls: BTreeMap<String, u64>,
}

/// A running stand-in; it serves until the test's runtime ends.
#[derive(Clone)]
pub struct EksStandIn {
    pub endpoint: String,
    pub account: String,
    pub region: String,
    inner: Arc<Mutex<Inner>>,
}

type Shared = (Arc<Mutex<Inner>>, String, String);

impl EksStandIn {
    /// Starts the stand-in with these clusters, in `account` and `region`.
    pub async fn start(account: &str, region: &str, clusters: &[&str]) -> EksStandIn {
        let inner = Arc::new(Mutex::new(Inner {
            clusters: clusters.iter().map(|c| c.to_string()).collect(),
            ..Inner::default()
        }));
        let state: Shared = (inner.clone(), account.to_string(), region.to_string());
        let app = Router::new()
            .route(
                "/clusters/{name}/pod-identity-associations",
                get(list).post(create),
            )
            .route(
                "/clusters/{name}/pod-identity-associations/{id}",
                get(describe).post(update).delete(delete),
            )
            .fallback(|| async {
                error(
                    StatusCode::NOT_FOUND,
                    "UnknownOperationException",
                    "the EKS stand-in serves only the pod identity association operations",
                )
            })
            .with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the EKS stand-in");
        let port = listener.local_addr().expect("local addr").port();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        EksStandIn {
            endpoint: format!("http://127.0.0.1:{port}"),
            account: account.to_string(),
            region: region.to_string(),
            inner,
        }
    }

    /// Every association, in creation order.
    pub fn associations(&self) -> Vec<StoredAssociation> {
        self.inner.lock().unwrap().associations.clone()
    }

    /// Requests served per operation (e.g. "CreatePodIdentityAssociation").
    pub fn calls(&self) -> BTreeMap<String, u64> {
        self.inner.lock().unwrap().calls.clone()
    }

    /// Forgets every association (clusters stay), as moto's reset does for IAM.
    pub fn reset(&self) {
        let mut inner = self.inner.lock().unwrap();
        inner.associations.clear();
        inner.tokens.clear();
        inner.calls.clear();
    }

    /// An `aws-sdk-eks` client for this stand-in, with static test credentials.
    pub fn sdk_client(&self) -> aws_sdk_eks::Client {
        aws_sdk_eks::Client::from_conf(self.sdk_config().build())
    }

    /// SDK config for this stand-in, to add interceptors to.
    pub fn sdk_config(&self) -> aws_sdk_eks::config::Builder {
        aws_sdk_eks::Config::builder()
            .behavior_version_latest()
            .endpoint_url(&self.endpoint)
            .region(aws_sdk_eks::config::Region::new(self.region.clone()))
            .credentials_provider(aws_sdk_eks::config::Credentials::new(
                "testing", "testing", None, None, "static",
            ))
            .http_client(hatrack::iam::http_client())
    }
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    // restJson1: the code in the x-amzn-ErrorType header, the message in the body.
    (
        status,
        [("x-amzn-ErrorType", code.to_string())],
        axum::Json(json!({"message": message})),
    )
        .into_response()
}

fn invalid(message: &str) -> Response {
    error(
        StatusCode::BAD_REQUEST,
        "InvalidParameterException",
        message,
    )
}

fn now() -> f64 {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    // EKS timestamps are epoch seconds with milliseconds.
    (d.as_millis() as f64) / 1000.0
}

fn new_id() -> String {
    use rand::Rng;
    const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    let tail: String = (0..17)
        .map(|_| CHARS[rng.random_range(0..CHARS.len())] as char)
        .collect();
    format!("a-{tail}")
}

/// An external id as EKS makes them (a UUID).
fn new_external_id() -> String {
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

fn full(a: &StoredAssociation) -> Value {
    let mut v = full_without_target(a);
    if let (Some(t), Some(e)) = (&a.target_role_arn, &a.external_id) {
        v["targetRoleArn"] = json!(t);
        v["externalId"] = json!(e);
    }
    v
}

fn full_without_target(a: &StoredAssociation) -> Value {
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

fn summary(a: &StoredAssociation) -> Value {
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
fn is_k8s_name(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.ends_with(|c: char| c.is_ascii_alphanumeric())
}

fn is_role_arn(s: &str) -> bool {
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

fn tags_problem(tags: &BTreeMap<String, String>) -> Option<String> {
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

fn count(inner: &mut Inner, op: &str) {
    *inner.calls.entry(op.to_string()).or_default() += 1;
}

fn no_cluster(name: &str) -> Response {
    error(
        StatusCode::NOT_FOUND,
        "ResourceNotFoundException",
        &format!("No cluster found for name: {name}."),
    )
}

fn parse_body(body: &Bytes) -> Result<serde_json::Map<String, Value>, Response> {
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

fn string_field(
    body: &serde_json::Map<String, Value>,
    field: &str,
) -> Result<Option<String>, Response> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(invalid(&format!("{field} must be a string"))),
    }
}

async fn create(
    State((inner, account, region)): State<Shared>,
    Path(cluster): Path<String>,
    body: Bytes,
) -> Response {
    let mut inner = inner.lock().unwrap();
    count(&mut inner, "CreatePodIdentityAssociation");
    if !inner.clusters.contains(&cluster) {
        return no_cluster(&cluster);
    }
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

async fn describe(
    State((inner, _, _)): State<Shared>,
    Path((cluster, id)): Path<(String, String)>,
) -> Response {
    let mut inner = inner.lock().unwrap();
    count(&mut inner, "DescribePodIdentityAssociation");
    if !inner.clusters.contains(&cluster) {
        return no_cluster(&cluster);
    }
    match inner
        .associations
        .iter()
        .find(|a| a.cluster == cluster && a.id == id)
    {
        Some(a) => axum::Json(json!({"association": full(a)})).into_response(),
        None => not_found(&id),
    }
}

fn not_found(id: &str) -> Response {
    error(
        StatusCode::NOT_FOUND,
        "ResourceNotFoundException",
        &format!("No Pod Identity Association found with ID: {id}"),
    )
}

fn query_params(uri: &Uri) -> HashMap<String, String> {
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

async fn list(
    State((inner, _, _)): State<Shared>,
    Path(cluster): Path<String>,
    uri: Uri,
) -> Response {
    let mut inner = inner.lock().unwrap();
    count(&mut inner, "ListPodIdentityAssociations");
    if !inner.clusters.contains(&cluster) {
        return no_cluster(&cluster);
    }
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

async fn update(
    State((inner, _, _)): State<Shared>,
    Path((cluster, id)): Path<(String, String)>,
    _headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut inner = inner.lock().unwrap();
    count(&mut inner, "UpdatePodIdentityAssociation");
    if !inner.clusters.contains(&cluster) {
        return no_cluster(&cluster);
    }
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

async fn delete(
    State((inner, _, _)): State<Shared>,
    Path((cluster, id)): Path<(String, String)>,
) -> Response {
    let mut inner = inner.lock().unwrap();
    count(&mut inner, "DeletePodIdentityAssociation");
    if !inner.clusters.contains(&cluster) {
        return no_cluster(&cluster);
    }
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
