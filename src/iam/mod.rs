//! The IAM edge: reads a role's actual state and makes the writes a diff asks for, through
//! `aws-sdk-iam`, rate-limited and counted. Nothing here decides *what* to write.
//!
//! This file: flags, errors, the client and the one call wrapper every request goes through;
//! [`read`]: roles and policies as IAM has them; [`write`]: changes, tags, deleting a role.

use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_iam::config::retry::{RetryPartition, TokenBucket};
use aws_sdk_iam::error::{ProvideErrorMetadata, SdkError};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

use crate::metrics::Metrics;
use crate::throttle::ThrottlePause;

mod read;
mod write;

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

impl crate::aws::ServiceError for IamError {
    fn transport(operation: &'static str, message: String) -> Self {
        IamError::Transport { operation, message }
    }

    fn bad_response(operation: &'static str, message: String) -> Self {
        IamError::BadResponse { operation, message }
    }

    fn from_code(operation: &'static str, code: String, message: String) -> Self {
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
    /// The account a client of another account acts in (its assumed role's), for the
    /// per-account call count; `None` for the controller's own credentials.
    account: Option<Arc<str>>,
}

/// Credentials cannot be obtained (e.g. `sts:AssumeRole` refused or STS unreachable).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct CredentialsUnavailable(pub String);

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
        let mut iam = Iam::from_sdk_config(&config, calls_per_second, self.metrics.clone());
        iam.account = target.role_arn.split(':').nth(4).map(Arc::from);
        Some(iam)
    }

    /// Obtains this client's credentials: for a client of another account, `sts:AssumeRole`
    /// into its role (the SDK caches them until shortly before they expire, so a check while
    /// they are valid costs no call). `None` for a client built by hand, which has no
    /// provider to ask.
    pub async fn check_credentials(&self) -> Option<Result<(), CredentialsUnavailable>> {
        use aws_credential_types::provider::ProvideCredentials;
        let provider = self.sdk.as_ref()?.credentials_provider()?;
        Some(
            provider
                .provide_credentials()
                .await
                .map(|_| ())
                .map_err(|e| CredentialsUnavailable(crate::aws::error_text(&e))),
        )
    }

    pub fn new(client: aws_sdk_iam::Client, calls_per_second: u32, metrics: Arc<Metrics>) -> Iam {
        let rate = NonZeroU32::new(calls_per_second).unwrap_or(NonZeroU32::MIN);
        Iam {
            client,
            limiter: Arc::new(RateLimiter::direct(Quota::per_second(rate))),
            pause: Arc::new(Mutex::new(ThrottlePause::default())),
            metrics,
            sdk: None,
            account: None,
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
        R: std::fmt::Debug + 'static,
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
        let result = fut
            .await
            .map_err(|e| crate::aws::classify::<IamError, _, _>(operation, e));
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
        self.metrics
            .iam_call_in(self.account.as_deref().unwrap_or("controller"));
        result
    }
}
