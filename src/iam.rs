//! The IAM edge: reads a role's actual state and makes the writes a diff asks for, through
//! `aws-sdk-iam`, rate-limited and counted. Nothing here decides *what* to write.

use std::collections::{BTreeMap, BTreeSet};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_iam::config::retry::{RetryPartition, TokenBucket};
use aws_sdk_iam::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_iam::types::Tag;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use serde_json::Value;

use crate::metrics::Metrics;
use crate::policy;
use crate::role::{ActualRole, Change, Role};
use crate::throttle::ThrottlePause;

/// Flags for reaching IAM.
#[derive(Debug, Clone, clap::Args)]
pub struct IamArgs {
    /// IAM endpoint override (for IAM-compatible test servers; AWS needs none).
    #[arg(long, env = "HATRACK_IAM_ENDPOINT")]
    pub iam_endpoint: Option<String>,
    /// Region for the AWS SDK (IAM is global; this picks the STS endpoint for credentials).
    /// Default us-east-1. When set and `--cluster-region` is not, it is taken as the cluster's.
    #[arg(long, env = "AWS_REGION")]
    pub aws_region: Option<String>,
    /// Client-side limit on IAM calls per second, shared by all reconciles.
    #[arg(long, env = "HATRACK_IAM_CALLS_PER_SECOND", default_value_t = 10)]
    pub iam_calls_per_second: u32,
    /// Attempts per IAM call (the SDK retries throttling and 5xx with jittered backoff; its
    /// retry quota is not capped, the calls-per-second limit bounds the load instead).
    #[arg(long, env = "HATRACK_IAM_MAX_ATTEMPTS", default_value_t = 5)]
    pub iam_max_attempts: u32,
}

impl IamArgs {
    /// The SDK's region: `--aws-region`, or us-east-1.
    pub fn region(&self) -> &str {
        self.explicit_region().unwrap_or("us-east-1")
    }

    /// `--aws-region` (or `AWS_REGION`) when set: the controller takes it for the cluster's
    /// region when `--cluster-region` is not set. The us-east-1 default never is, since a
    /// wrong region would key roles and Pod Identity trust on another cluster's ARN.
    pub fn explicit_region(&self) -> Option<&str> {
        self.aws_region
            .as_deref()
            .map(str::trim)
            .filter(|r| !r.is_empty())
    }
}

/// An IAM failure, classified for retry policy, conditions and metrics.
#[derive(Debug, Clone, thiserror::Error)]
pub enum IamError {
    #[error("{operation}: not found: {message}")]
    NotFound {
        operation: &'static str,
        message: String,
    },
    #[error("{operation}: already exists: {message}")]
    AlreadyExists {
        operation: &'static str,
        message: String,
    },
    #[error("{operation}: delete conflict: {message}")]
    DeleteConflict {
        operation: &'static str,
        message: String,
    },
    #[error("{operation}: throttled by IAM: {message}")]
    Throttled {
        operation: &'static str,
        message: String,
    },
    #[error("{operation}: IAM refused the request ({code}): {message}")]
    Refused {
        operation: &'static str,
        code: String,
        message: String,
    },
    #[error("{operation}: IAM service error ({code}): {message}")]
    Service {
        operation: &'static str,
        code: String,
        message: String,
    },
    #[error("{operation}: cannot reach IAM: {message}")]
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

impl IamError {
    /// Low-cardinality label for metrics and condition reasons.
    pub fn label(&self) -> &'static str {
        match self {
            IamError::NotFound { .. } => "not_found",
            IamError::AlreadyExists { .. } => "already_exists",
            IamError::DeleteConflict { .. } => "delete_conflict",
            IamError::Throttled { .. } => "throttled",
            IamError::Refused { .. } => "refused",
            IamError::Service { .. } => "service",
            IamError::Transport { .. } => "transport",
            IamError::BadResponse { .. } => "bad_response",
        }
    }

    /// Whether waiting and trying again may help without a spec change.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            IamError::Throttled { .. } | IamError::Service { .. } | IamError::Transport { .. }
        )
    }
}

fn classify<E, R>(operation: &'static str, err: SdkError<E, R>) -> IamError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let message = err
        .message()
        .map(str::to_string)
        .unwrap_or_else(|| aws_smithy_types::error::display::DisplayErrorContext(&err).to_string());
    let code = err.code().unwrap_or("").to_string();
    match &err {
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => {
            return IamError::Transport { operation, message };
        }
        SdkError::ResponseError(_) => return IamError::BadResponse { operation, message },
        _ => {}
    }
    match code.as_str() {
        "NoSuchEntity" => IamError::NotFound { operation, message },
        "EntityAlreadyExists" => IamError::AlreadyExists { operation, message },
        "DeleteConflict" => IamError::DeleteConflict { operation, message },
        "Throttling" | "ThrottlingException" | "RequestLimitExceeded" => {
            IamError::Throttled { operation, message }
        }
        "ServiceFailure" | "ServiceUnavailable" | "InternalFailure" | "" => IamError::Service {
            operation,
            code,
            message,
        },
        _ => IamError::Refused {
            operation,
            code,
            message,
        },
    }
}

/// Every IAM operation hatrack calls: what the operator's own IAM policy must allow
/// (`docs/operator-iam-policy.json`, tested in `tests/operator_policy.rs`).
pub const IAM_OPERATIONS: &[&str] = &[
    "GetRole",
    "ListRolePolicies",
    "GetRolePolicy",
    "ListAttachedRolePolicies",
    "ListInstanceProfilesForRole",
    "GetOpenIDConnectProvider",
    "GetPolicy",
    "GetPolicyVersion",
    "CreateRole",
    "UpdateAssumeRolePolicy",
    "UpdateRole",
    "PutRolePermissionsBoundary",
    "TagRole",
    "UntagRole",
    "PutRolePolicy",
    "DeleteRolePolicy",
    "AttachRolePolicy",
    "DetachRolePolicy",
    "DeleteRole",
    // The orphan sweep (src/controller/orphans.rs).
    "ListRoles",
    "ListRoleTags",
];

/// The HTTPS client for AWS: rustls with the ring provider (one TLS stack in the binary).
pub fn http_client() -> aws_smithy_runtime_api::client::http::SharedHttpClient {
    aws_smithy_http_client::Builder::new()
        .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
            aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https()
}

/// The IAM client hatrack uses.
#[derive(Clone)]
pub struct Iam {
    client: aws_sdk_iam::Client,
    limiter: Arc<DefaultDirectRateLimiter>,
    /// Pause of all calls after IAM throttles one past the SDK's retries.
    pause: Arc<Mutex<ThrottlePause>>,
    metrics: Arc<Metrics>,
    /// The SDK configuration the client was built from: the base for clients of other
    /// accounts ([`Iam::assume_role`]). `None` for a client built by hand.
    sdk: Option<aws_config::SdkConfig>,
    calls_per_second: u32,
}

/// How to reach another AWS account: a role there that the operator assumes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AssumeRoleTarget {
    pub role_arn: String,
    pub external_id: Option<String>,
    pub session_name: String,
}

/// What holds a role that hatrack cannot delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeleteOutcome {
    Deleted,
    AlreadyGone,
    /// Something hatrack does not own keeps the role (instance profiles), so it stays.
    HeldBy(Vec<String>),
}

impl Iam {
    /// Builds the SDK client from the default credential chain (IRSA or Pod Identity in a
    /// cluster; never static keys shipped with hatrack).
    pub async fn from_args(args: &IamArgs, metrics: Arc<Metrics>) -> Iam {
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .http_client(http_client())
            .region(aws_config::Region::new(args.region().to_string()))
            .retry_config(
                aws_config::retry::RetryConfig::standard()
                    .with_max_attempts(args.iam_max_attempts.max(1)),
            )
            .timeout_config(
                aws_config::timeout::TimeoutConfig::builder()
                    .operation_attempt_timeout(Duration::from_secs(10))
                    .operation_timeout(Duration::from_secs(60))
                    .build(),
            );
        if let Some(endpoint) = &args.iam_endpoint {
            loader = loader.endpoint_url(endpoint);
        }
        let config = loader.load().await;
        Iam::from_sdk_config(&config, args.iam_calls_per_second, metrics)
    }

    /// An IAM client from an SDK configuration, which is kept as the base for clients of
    /// other accounts.
    pub fn from_sdk_config(
        config: &aws_config::SdkConfig,
        calls_per_second: u32,
        metrics: Arc<Metrics>,
    ) -> Iam {
        // The SDK's standard retry quota (500 tokens, 5 per retry, 1 back per first-try
        // success) runs dry under sustained throttling and then stops retrying at all, which
        // turns throttling into failed reconciles. hatrack bounds its load itself (the shared
        // calls-per-second limit and a shared pause on throttling), so retries are limited only
        // by --iam-max-attempts.
        let iam_config = aws_sdk_iam::config::Builder::from(config)
            .retry_partition(
                RetryPartition::custom("hatrack-iam")
                    .token_bucket(TokenBucket::unlimited())
                    .build(),
            )
            .build();
        let mut iam = Iam::new(
            aws_sdk_iam::Client::from_conf(iam_config),
            calls_per_second,
            metrics,
        );
        iam.sdk = Some(config.clone());
        iam
    }

    /// A client acting in another account, with credentials of `target`'s role assumed
    /// through STS from this client's own credentials. The SDK caches them and assumes the
    /// role again shortly before they expire. Its own rate limit and throttling pause: IAM
    /// throttles per account. `None` when this client has no SDK configuration to start from.
    pub async fn assume_role(
        &self,
        target: &AssumeRoleTarget,
        calls_per_second: u32,
    ) -> Option<Iam> {
        use aws_credential_types::provider::SharedCredentialsProvider;
        let base = self.sdk.as_ref()?;
        let mut provider = aws_config::sts::AssumeRoleProvider::builder(&target.role_arn)
            .configure(base)
            .session_name(&target.session_name);
        if let Some(id) = &target.external_id {
            provider = provider.external_id(id);
        }
        let provider = provider.build().await;
        let config = base
            .to_builder()
            .credentials_provider(SharedCredentialsProvider::new(provider))
            .build();
        Some(Iam::from_sdk_config(
            &config,
            calls_per_second,
            self.metrics.clone(),
        ))
    }

    pub fn new(client: aws_sdk_iam::Client, calls_per_second: u32, metrics: Arc<Metrics>) -> Iam {
        let rate = NonZeroU32::new(calls_per_second).unwrap_or(NonZeroU32::MIN);
        Iam {
            client,
            limiter: Arc::new(RateLimiter::direct(Quota::per_second(rate))),
            pause: Arc::new(Mutex::new(ThrottlePause::default())),
            metrics,
            sdk: None,
            calls_per_second: rate.get(),
        }
    }

    /// The client-side limit on calls per second.
    pub fn calls_per_second(&self) -> u32 {
        self.calls_per_second
    }

    /// Waits out a throttling pause and the rate limiter, runs one IAM call and counts its
    /// outcome.
    async fn call<T, E, R, F>(&self, operation: &'static str, fut: F) -> Result<T, IamError>
    where
        F: std::future::Future<Output = Result<T, SdkError<E, R>>>,
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug,
    {
        // The pause may be extended while we sleep, so look again after each.
        while let Some(wait) = self
            .pause
            .lock()
            .ok()
            .and_then(|p| p.remaining(Instant::now()))
        {
            tokio::time::sleep(wait).await;
        }
        self.limiter.until_ready().await;
        let result = fut.await.map_err(|e| classify(operation, e));
        if let Ok(mut pause) = self.pause.lock() {
            match &result {
                Err(IamError::Throttled { .. }) => {
                    let wait = pause.throttled(Instant::now(), rand::random::<f64>());
                    tracing::debug!(operation, pause = ?wait, "IAM throttled past the SDK's retries; pausing IAM calls");
                }
                Err(_) => {}
                Ok(_) => pause.succeeded(),
            }
        }
        let outcome = match &result {
            Ok(_) => "success",
            Err(e) => e.label(),
        };
        self.metrics.iam_call(operation, outcome);
        result
    }

    /// The role as IAM has it, or `None` when there is no role of that name.
    #[tracing::instrument(skip(self))]
    pub async fn get_role(&self, role_name: &str) -> Result<Option<ActualRole>, IamError> {
        let out = match self
            .call(
                "GetRole",
                self.client.get_role().role_name(role_name).send(),
            )
            .await
        {
            Ok(out) => out,
            Err(IamError::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let Some(role) = out.role() else {
            return Err(IamError::BadResponse {
                operation: "GetRole",
                message: "response has no role".into(),
            });
        };
        let assume_role_policy = match role.assume_role_policy_document() {
            Some(doc) => policy::decode_document(doc).map_err(|message| IamError::BadResponse {
                operation: "GetRole",
                message,
            })?,
            None => Value::Null,
        };
        let tags: BTreeMap<String, String> = role
            .tags()
            .iter()
            .map(|t| (t.key().to_string(), t.value().to_string()))
            .collect();
        let mut actual = ActualRole {
            role_name: role.role_name().to_string(),
            path: role.path().to_string(),
            arn: role.arn().to_string(),
            assume_role_policy,
            permissions_boundary: role
                .permissions_boundary()
                .and_then(|b| b.permissions_boundary_arn())
                .map(str::to_string),
            max_session_duration: role.max_session_duration().unwrap_or(3600),
            description: role.description().unwrap_or("").to_string(),
            tags,
            ..ActualRole::default()
        };
        actual.inline_policies = self.inline_policies(role_name).await?;
        actual.managed_policy_arns = self.attached_policies(role_name).await?;
        Ok(Some(actual))
    }

    async fn inline_policy_names(&self, role_name: &str) -> Result<Vec<String>, IamError> {
        let mut names = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let out = self
                .call(
                    "ListRolePolicies",
                    self.client
                        .list_role_policies()
                        .role_name(role_name)
                        .set_marker(marker.clone())
                        .send(),
                )
                .await?;
            names.extend(out.policy_names().iter().cloned());
            match (out.is_truncated(), out.marker()) {
                (true, Some(m)) => marker = Some(m.to_string()),
                _ => return Ok(names),
            }
        }
    }

    async fn inline_policies(&self, role_name: &str) -> Result<BTreeMap<String, Value>, IamError> {
        let mut docs = BTreeMap::new();
        for name in self.inline_policy_names(role_name).await? {
            let out = self
                .call(
                    "GetRolePolicy",
                    self.client
                        .get_role_policy()
                        .role_name(role_name)
                        .policy_name(&name)
                        .send(),
                )
                .await?;
            let doc = policy::decode_document(out.policy_document()).map_err(|message| {
                IamError::BadResponse {
                    operation: "GetRolePolicy",
                    message,
                }
            })?;
            docs.insert(name, doc);
        }
        Ok(docs)
    }

    async fn attached_policies(&self, role_name: &str) -> Result<BTreeSet<String>, IamError> {
        let mut arns = BTreeSet::new();
        let mut marker: Option<String> = None;
        loop {
            let out = self
                .call(
                    "ListAttachedRolePolicies",
                    self.client
                        .list_attached_role_policies()
                        .role_name(role_name)
                        .set_marker(marker.clone())
                        .send(),
                )
                .await?;
            arns.extend(
                out.attached_policies()
                    .iter()
                    .filter_map(|p| p.policy_arn().map(str::to_string)),
            );
            match (out.is_truncated(), out.marker()) {
                (true, Some(m)) => marker = Some(m.to_string()),
                _ => return Ok(arns),
            }
        }
    }

    /// Makes one write.
    #[tracing::instrument(skip(self, desired, change), fields(role = %desired.role_name, operation = change.operation()))]
    pub async fn apply(&self, desired: &Role, change: &Change) -> Result<(), IamError> {
        let role = desired.role_name.as_str();
        let c = &self.client;
        match change {
            Change::CreateRole => {
                let tags = to_tags(&desired.tags)?;
                self.call(
                    "CreateRole",
                    c.create_role()
                        .role_name(role)
                        .path(&desired.path)
                        .assume_role_policy_document(desired.assume_role_policy.to_string())
                        .description(&desired.description)
                        .max_session_duration(desired.max_session_duration)
                        .set_permissions_boundary(desired.permissions_boundary.clone())
                        .set_tags(Some(tags))
                        .send(),
                )
                .await
                .map(drop)
            }
            Change::UpdateAssumeRolePolicy(doc) => self
                .call(
                    "UpdateAssumeRolePolicy",
                    c.update_assume_role_policy()
                        .role_name(role)
                        .policy_document(doc.to_string())
                        .send(),
                )
                .await
                .map(drop),
            Change::UpdateRole {
                description,
                max_session_duration,
            } => self
                .call(
                    "UpdateRole",
                    c.update_role()
                        .role_name(role)
                        .description(description)
                        .max_session_duration(*max_session_duration)
                        .send(),
                )
                .await
                .map(drop),
            Change::PutPermissionsBoundary(arn) => self
                .call(
                    "PutRolePermissionsBoundary",
                    c.put_role_permissions_boundary()
                        .role_name(role)
                        .permissions_boundary(arn)
                        .send(),
                )
                .await
                .map(drop),
            Change::TagRole(tags) => self
                .call(
                    "TagRole",
                    c.tag_role()
                        .role_name(role)
                        .set_tags(Some(to_tags(tags)?))
                        .send(),
                )
                .await
                .map(drop),
            Change::UntagRole(keys) => self
                .call(
                    "UntagRole",
                    c.untag_role()
                        .role_name(role)
                        .set_tag_keys(Some(keys.clone()))
                        .send(),
                )
                .await
                .map(drop),
            Change::PutRolePolicy { name, document } => self
                .call(
                    "PutRolePolicy",
                    c.put_role_policy()
                        .role_name(role)
                        .policy_name(name)
                        .policy_document(document.to_string())
                        .send(),
                )
                .await
                .map(drop),
            Change::DeleteRolePolicy(name) => {
                match self
                    .call(
                        "DeleteRolePolicy",
                        c.delete_role_policy()
                            .role_name(role)
                            .policy_name(name)
                            .send(),
                    )
                    .await
                {
                    Ok(_) | Err(IamError::NotFound { .. }) => Ok(()),
                    Err(e) => Err(e),
                }
            }
            Change::AttachRolePolicy(arn) => self
                .call(
                    "AttachRolePolicy",
                    c.attach_role_policy()
                        .role_name(role)
                        .policy_arn(arn)
                        .send(),
                )
                .await
                .map(drop),
            Change::DetachRolePolicy(arn) => {
                match self
                    .call(
                        "DetachRolePolicy",
                        c.detach_role_policy()
                            .role_name(role)
                            .policy_arn(arn)
                            .send(),
                    )
                    .await
                {
                    Ok(_) | Err(IamError::NotFound { .. }) => Ok(()),
                    Err(e) => Err(e),
                }
            }
        }
    }

    /// Deletes a role hatrack owns: detaches managed policies and deletes inline ones first
    /// (IAM refuses to delete a role that has them), then the role. Something foreign holding
    /// the role (an instance profile) is reported, not removed.
    #[tracing::instrument(skip(self))]
    pub async fn delete_role(&self, role_name: &str) -> Result<DeleteOutcome, IamError> {
        for _ in 0..3 {
            let attached = match self.attached_policies(role_name).await {
                Ok(a) => a,
                Err(IamError::NotFound { .. }) => return Ok(DeleteOutcome::AlreadyGone),
                Err(e) => return Err(e),
            };
            for arn in attached {
                match self
                    .call(
                        "DetachRolePolicy",
                        self.client
                            .detach_role_policy()
                            .role_name(role_name)
                            .policy_arn(&arn)
                            .send(),
                    )
                    .await
                {
                    Ok(_) | Err(IamError::NotFound { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
            let inline = match self.inline_policy_names(role_name).await {
                Ok(n) => n,
                Err(IamError::NotFound { .. }) => return Ok(DeleteOutcome::AlreadyGone),
                Err(e) => return Err(e),
            };
            for name in inline {
                match self
                    .call(
                        "DeleteRolePolicy",
                        self.client
                            .delete_role_policy()
                            .role_name(role_name)
                            .policy_name(&name)
                            .send(),
                    )
                    .await
                {
                    Ok(_) | Err(IamError::NotFound { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
            match self
                .call(
                    "DeleteRole",
                    self.client.delete_role().role_name(role_name).send(),
                )
                .await
            {
                Ok(_) => return Ok(DeleteOutcome::Deleted),
                Err(IamError::NotFound { .. }) => return Ok(DeleteOutcome::AlreadyGone),
                Err(IamError::DeleteConflict { .. }) => {
                    let holders = self.instance_profiles(role_name).await?;
                    if !holders.is_empty() {
                        return Ok(DeleteOutcome::HeldBy(holders));
                    }
                    // A policy attached between our listing and the delete: go round again.
                }
                Err(e) => return Err(e),
            }
        }
        Err(IamError::DeleteConflict {
            operation: "DeleteRole",
            message: format!("role {role_name} kept gaining policies while being deleted"),
        })
    }

    async fn instance_profiles(&self, role_name: &str) -> Result<Vec<String>, IamError> {
        let out = self
            .call(
                "ListInstanceProfilesForRole",
                self.client
                    .list_instance_profiles_for_role()
                    .role_name(role_name)
                    .send(),
            )
            .await?;
        Ok(out
            .instance_profiles()
            .iter()
            .map(|p| format!("instance profile {}", p.instance_profile_name()))
            .collect())
    }

    /// A role's path, ARN and tags (one GetRole), or `None` when there is no role of that name.
    pub async fn role_identity(
        &self,
        role_name: &str,
    ) -> Result<Option<(String, String, BTreeMap<String, String>)>, IamError> {
        let out = match self
            .call(
                "GetRole",
                self.client.get_role().role_name(role_name).send(),
            )
            .await
        {
            Ok(out) => out,
            Err(IamError::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let Some(role) = out.role() else {
            return Err(IamError::BadResponse {
                operation: "GetRole",
                message: "response has no role".into(),
            });
        };
        let tags = role
            .tags()
            .iter()
            .map(|t| (t.key().to_string(), t.value().to_string()))
            .collect();
        Ok(Some((
            role.path().to_string(),
            role.arn().to_string(),
            tags,
        )))
    }

    /// (name, ARN) of every role under `path_prefix`.
    pub async fn list_roles(&self, path_prefix: &str) -> Result<Vec<(String, String)>, IamError> {
        let mut roles = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let out = self
                .call(
                    "ListRoles",
                    self.client
                        .list_roles()
                        .path_prefix(path_prefix)
                        .max_items(1000)
                        .set_marker(marker.clone())
                        .send(),
                )
                .await?;
            roles.extend(
                out.roles()
                    .iter()
                    .map(|r| (r.role_name().to_string(), r.arn().to_string())),
            );
            match (out.is_truncated(), out.marker()) {
                (true, Some(m)) => marker = Some(m.to_string()),
                _ => return Ok(roles),
            }
        }
    }

    /// A role's tags (`None` when the role is gone).
    pub async fn role_tags(
        &self,
        role_name: &str,
    ) -> Result<Option<BTreeMap<String, String>>, IamError> {
        let mut tags = BTreeMap::new();
        let mut marker: Option<String> = None;
        loop {
            let out = match self
                .call(
                    "ListRoleTags",
                    self.client
                        .list_role_tags()
                        .role_name(role_name)
                        .set_marker(marker.clone())
                        .send(),
                )
                .await
            {
                Ok(out) => out,
                Err(IamError::NotFound { .. }) => return Ok(None),
                Err(e) => return Err(e),
            };
            tags.extend(
                out.tags()
                    .iter()
                    .map(|t| (t.key().to_string(), t.value().to_string())),
            );
            match (out.is_truncated(), out.marker()) {
                (true, Some(m)) => marker = Some(m.to_string()),
                _ => return Ok(Some(tags)),
            }
        }
    }

    /// Sets tags on a role (adds or overwrites those keys).
    pub async fn tag_role(
        &self,
        role_name: &str,
        tags: &BTreeMap<String, String>,
    ) -> Result<(), IamError> {
        self.call(
            "TagRole",
            self.client
                .tag_role()
                .role_name(role_name)
                .set_tags(Some(to_tags(tags)?))
                .send(),
        )
        .await
        .map(drop)
    }

    /// The default version id of a managed policy (customer or AWS managed), `None` when
    /// there is no such policy.
    #[tracing::instrument(skip(self))]
    pub async fn policy_default_version(&self, arn: &str) -> Result<Option<String>, IamError> {
        match self
            .call("GetPolicy", self.client.get_policy().policy_arn(arn).send())
            .await
        {
            Ok(out) => out
                .policy()
                .and_then(|p| p.default_version_id())
                .map(|v| Some(v.to_string()))
                .ok_or_else(|| IamError::BadResponse {
                    operation: "GetPolicy",
                    message: format!("policy {arn} has no default version id"),
                }),
            Err(IamError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The document of one version of a managed policy (decoded from IAM's URL encoding).
    #[tracing::instrument(skip(self))]
    pub async fn policy_version_document(
        &self,
        arn: &str,
        version_id: &str,
    ) -> Result<Value, IamError> {
        let out = self
            .call(
                "GetPolicyVersion",
                self.client
                    .get_policy_version()
                    .policy_arn(arn)
                    .version_id(version_id)
                    .send(),
            )
            .await?;
        let encoded = out
            .policy_version()
            .and_then(|v| v.document())
            .ok_or_else(|| IamError::BadResponse {
                operation: "GetPolicyVersion",
                message: format!("policy {arn} version {version_id} has no document"),
            })?;
        policy::decode_document(encoded).map_err(|message| IamError::BadResponse {
            operation: "GetPolicyVersion",
            message,
        })
    }

    /// Whether the IAM OIDC provider exists (IRSA cannot work without it).
    pub async fn oidc_provider_exists(&self, arn: &str) -> Result<bool, IamError> {
        match self
            .call(
                "GetOpenIDConnectProvider",
                self.client
                    .get_open_id_connect_provider()
                    .open_id_connect_provider_arn(arn)
                    .send(),
            )
            .await
        {
            Ok(_) => Ok(true),
            Err(IamError::NotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

fn to_tags(tags: &BTreeMap<String, String>) -> Result<Vec<Tag>, IamError> {
    tags.iter()
        .map(|(k, v)| {
            Tag::builder()
                .key(k)
                .value(v)
                .build()
                .map_err(|e| IamError::Refused {
                    operation: "TagRole",
                    code: "InvalidInput".into(),
                    message: e.to_string(),
                })
        })
        .collect()
}
