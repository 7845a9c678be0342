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

mod operations;
mod wire;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;

use operations::{create, delete, describe, list, update};
use wire::error;

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
