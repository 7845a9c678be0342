//! The EKS edge: lists, reads and writes the cluster's Pod Identity associations through
//! `aws-sdk-eks`, rate-limited and counted. Nothing here decides *what* to write (that is
//! [`crate::association`]).

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_eks::error::{ProvideErrorMetadata, SdkError};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

use crate::association::{ActualAssociation, AssociationSummary};
use crate::metrics::Metrics;

/// Flags for reaching EKS.
#[derive(Debug, Clone, clap::Args)]
pub struct EksArgs {
    /// Make an EKS Pod Identity association per ServiceAccount of each binding with podIdentity
    /// trust (`false`: leave associations to someone else).
    #[arg(
        long,
        env = "HATRACK_POD_IDENTITY_ASSOCIATIONS",
        default_value_t = true,
        action = clap::ArgAction::Set
    )]
    pub pod_identity_associations: bool,
    /// EKS endpoint override (for EKS-compatible test servers; AWS needs none). The region is
    /// the cluster's (`--cluster-region`).
    #[arg(long, env = "HATRACK_EKS_ENDPOINT")]
    pub eks_endpoint: Option<String>,
    /// Client-side limit on EKS calls per second, shared by all reconciles.
    #[arg(long, env = "HATRACK_EKS_CALLS_PER_SECOND", default_value_t = 10)]
    pub eks_calls_per_second: u32,
}

/// An EKS failure, classified for retry policy, conditions and metrics.
#[derive(Debug, Clone, thiserror::Error)]
pub enum EksError {
    #[error("{operation}: not found: {message}")]
    NotFound {
        operation: &'static str,
        message: String,
    },
    /// `ResourceInUseException`: an association for that ServiceAccount already exists.
    #[error("{operation}: in use: {message}")]
    InUse {
        operation: &'static str,
        message: String,
    },
    #[error("{operation}: throttled by EKS: {message}")]
    Throttled {
        operation: &'static str,
        message: String,
    },
    #[error("{operation}: EKS refused the request ({code}): {message}")]
    Refused {
        operation: &'static str,
        code: String,
        message: String,
    },
    #[error("{operation}: EKS service error ({code}): {message}")]
    Service {
        operation: &'static str,
        code: String,
        message: String,
    },
    #[error("{operation}: cannot reach EKS: {message}")]
    Transport {
        operation: &'static str,
        message: String,
    },
    #[error("{operation}: unreadable response: {message}")]
    BadResponse {
        operation: &'static str,
        message: String,
    },
}

impl EksError {
    /// Low-cardinality label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            EksError::NotFound { .. } => "not_found",
            EksError::InUse { .. } => "in_use",
            EksError::Throttled { .. } => "throttled",
            EksError::Refused { .. } => "refused",
            EksError::Service { .. } => "service",
            EksError::Transport { .. } => "transport",
            EksError::BadResponse { .. } => "bad_response",
        }
    }

    /// Whether waiting and trying again may help without a spec change.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            EksError::Throttled { .. } | EksError::Service { .. } | EksError::Transport { .. }
        )
    }
}

impl crate::aws::ServiceError for EksError {
    fn transport(operation: &'static str, message: String) -> Self {
        EksError::Transport { operation, message }
    }

    fn bad_response(operation: &'static str, message: String) -> Self {
        EksError::BadResponse { operation, message }
    }

    fn from_code(operation: &'static str, code: String, message: String) -> Self {
        match code.as_str() {
            "ResourceNotFoundException" | "NotFoundException" => {
                EksError::NotFound { operation, message }
            }
            "ResourceInUseException" => EksError::InUse { operation, message },
            "ThrottlingException" | "TooManyRequestsException" => {
                EksError::Throttled { operation, message }
            }
            "ServerException" | "ServiceUnavailableException" | "" => EksError::Service {
                operation,
                code,
                message,
            },
            _ => EksError::Refused {
                operation,
                code,
                message,
            },
        }
    }
}

/// Every EKS operation hatrack calls: what the operator's own IAM policy must allow
/// (`docs/operator-iam-policy.json`, tested in `tests/operator_policy.rs`).
pub const EKS_OPERATIONS: &[&str] = &[
    "ListPodIdentityAssociations",
    "DescribePodIdentityAssociation",
    "CreatePodIdentityAssociation",
    "UpdatePodIdentityAssociation",
    "DeletePodIdentityAssociation",
];

/// The EKS client hatrack uses, bound to this cluster.
#[derive(Clone)]
pub struct Eks {
    client: aws_sdk_eks::Client,
    cluster: String,
    limiter: Arc<DefaultDirectRateLimiter>,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Eks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Eks")
            .field("cluster", &self.cluster)
            .finish_non_exhaustive()
    }
}

impl Eks {
    /// Builds the SDK client from the default credential chain, as [`crate::iam::Iam`] does;
    /// `None` when associations are switched off.
    pub async fn from_args(
        args: &EksArgs,
        region: &str,
        max_attempts: u32,
        cluster: &str,
        metrics: Arc<Metrics>,
    ) -> Option<Eks> {
        if !args.pod_identity_associations {
            return None;
        }
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .http_client(crate::iam::http_client())
            .region(aws_config::Region::new(region.to_string()))
            .retry_config(
                aws_config::retry::RetryConfig::standard().with_max_attempts(max_attempts.max(1)),
            )
            .timeout_config(
                aws_config::timeout::TimeoutConfig::builder()
                    .operation_attempt_timeout(Duration::from_secs(10))
                    .operation_timeout(Duration::from_secs(60))
                    .build(),
            );
        if let Some(endpoint) = &args.eks_endpoint {
            loader = loader.endpoint_url(endpoint);
        }
        let config = loader.load().await;
        Some(Eks::new(
            aws_sdk_eks::Client::new(&config),
            cluster,
            args.eks_calls_per_second,
            metrics,
        ))
    }

    pub fn new(
        client: aws_sdk_eks::Client,
        cluster: &str,
        calls_per_second: u32,
        metrics: Arc<Metrics>,
    ) -> Eks {
        let rate = NonZeroU32::new(calls_per_second).unwrap_or(NonZeroU32::MIN);
        Eks {
            client,
            cluster: cluster.to_string(),
            limiter: Arc::new(RateLimiter::direct(Quota::per_second(rate))),
            metrics,
        }
    }

    /// The EKS cluster name the associations live in.
    pub fn cluster(&self) -> &str {
        &self.cluster
    }

    async fn call<T, E, R, F>(&self, operation: &'static str, fut: F) -> Result<T, EksError>
    where
        F: std::future::Future<Output = Result<T, SdkError<E, R>>>,
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug + 'static,
    {
        self.limiter.until_ready().await;
        let result = fut
            .await
            .map_err(|e| crate::aws::classify::<EksError, _, _>(operation, e));
        let outcome = match &result {
            Ok(_) => "success",
            Err(e) => e.label(),
        };
        self.metrics.eks_call(operation, outcome);
        result
    }

    /// The associations of one namespace (every page).
    pub async fn list(&self, namespace: &str) -> Result<Vec<AssociationSummary>, EksError> {
        self.list_in(Some(namespace)).await
    }

    /// The associations of one namespace, or of the whole cluster for `None` (every page).
    #[tracing::instrument(skip(self))]
    pub async fn list_in(
        &self,
        namespace: Option<&str>,
    ) -> Result<Vec<AssociationSummary>, EksError> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .call(
                    "ListPodIdentityAssociations",
                    self.client
                        .list_pod_identity_associations()
                        .cluster_name(&self.cluster)
                        .set_namespace(namespace.map(str::to_string))
                        .set_next_token(token.clone())
                        .send(),
                )
                .await?;
            for a in page.associations() {
                let (Some(id), Some(arn), Some(sa)) =
                    (a.association_id(), a.association_arn(), a.service_account())
                else {
                    return Err(EksError::BadResponse {
                        operation: "ListPodIdentityAssociations",
                        message: "an association summary lacks its id, ARN or ServiceAccount"
                            .into(),
                    });
                };
                out.push(AssociationSummary {
                    id: id.to_string(),
                    arn: arn.to_string(),
                    namespace: match (a.namespace(), namespace) {
                        (Some(n), _) | (None, Some(n)) => n.to_string(),
                        (None, None) => {
                            return Err(EksError::BadResponse {
                                operation: "ListPodIdentityAssociations",
                                message: "an association summary lacks its namespace".into(),
                            });
                        }
                    },
                    service_account: sa.to_string(),
                });
            }
            match page.next_token() {
                Some(t) if !t.is_empty() && token.as_deref() != Some(t) => {
                    token = Some(t.to_string())
                }
                _ => return Ok(out),
            }
        }
    }

    /// One association with its role and tags, or `None` when it is gone.
    #[tracing::instrument(skip(self))]
    pub async fn describe(&self, id: &str) -> Result<Option<ActualAssociation>, EksError> {
        match self
            .call(
                "DescribePodIdentityAssociation",
                self.client
                    .describe_pod_identity_association()
                    .cluster_name(&self.cluster)
                    .association_id(id)
                    .send(),
            )
            .await
        {
            Ok(out) => actual("DescribePodIdentityAssociation", out.association()).map(Some),
            Err(EksError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Creates an association tagged with `tags`; with `target_role_arn`, EKS chains from
    /// `role_arn` to it (and returns the association's external id).
    #[tracing::instrument(skip(self, tags))]
    pub async fn create(
        &self,
        namespace: &str,
        service_account: &str,
        role_arn: &str,
        target_role_arn: Option<&str>,
        tags: &BTreeMap<String, String>,
    ) -> Result<ActualAssociation, EksError> {
        let out = self
            .call(
                "CreatePodIdentityAssociation",
                self.client
                    .create_pod_identity_association()
                    .cluster_name(&self.cluster)
                    .namespace(namespace)
                    .service_account(service_account)
                    .role_arn(role_arn)
                    .set_target_role_arn(target_role_arn.map(str::to_string))
                    .set_tags(Some(
                        tags.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
                    ))
                    .send(),
            )
            .await?;
        actual("CreatePodIdentityAssociation", out.association())
    }

    /// Points an association at another role and target role; `clear_target` removes a
    /// target role it has (EKS clears it on an empty `targetRoleArn`).
    #[tracing::instrument(skip(self))]
    pub async fn update_role(
        &self,
        id: &str,
        role_arn: &str,
        target_role_arn: Option<&str>,
        clear_target: bool,
    ) -> Result<ActualAssociation, EksError> {
        let target = match (target_role_arn, clear_target) {
            (Some(t), _) => Some(t.to_string()),
            (None, true) => Some(String::new()),
            (None, false) => None,
        };
        let out = self
            .call(
                "UpdatePodIdentityAssociation",
                self.client
                    .update_pod_identity_association()
                    .cluster_name(&self.cluster)
                    .association_id(id)
                    .role_arn(role_arn)
                    .set_target_role_arn(target)
                    .send(),
            )
            .await?;
        actual("UpdatePodIdentityAssociation", out.association())
    }

    /// Deletes an association; one already gone needs nothing.
    #[tracing::instrument(skip(self))]
    pub async fn delete(&self, id: &str) -> Result<(), EksError> {
        match self
            .call(
                "DeletePodIdentityAssociation",
                self.client
                    .delete_pod_identity_association()
                    .cluster_name(&self.cluster)
                    .association_id(id)
                    .send(),
            )
            .await
        {
            Ok(_) | Err(EksError::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

fn actual(
    operation: &'static str,
    a: Option<&aws_sdk_eks::types::PodIdentityAssociation>,
) -> Result<ActualAssociation, EksError> {
    let bad = |what: &str| EksError::BadResponse {
        operation,
        message: format!("the association in the response has no {what}"),
    };
    let a = a.ok_or_else(|| bad("body"))?;
    Ok(ActualAssociation {
        id: a.association_id().ok_or_else(|| bad("id"))?.to_string(),
        arn: a.association_arn().ok_or_else(|| bad("ARN"))?.to_string(),
        namespace: a.namespace().ok_or_else(|| bad("namespace"))?.to_string(),
        service_account: a
            .service_account()
            .ok_or_else(|| bad("ServiceAccount"))?
            .to_string(),
        role_arn: a.role_arn().unwrap_or_default().to_string(),
        tags: a
            .tags()
            .map(|t| t.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default(),
        target_role_arn: a
            .target_role_arn()
            .filter(|t| !t.is_empty())
            .map(str::to_string),
        external_id: a
            .external_id()
            .filter(|t| !t.is_empty())
            .map(str::to_string),
    })
}
