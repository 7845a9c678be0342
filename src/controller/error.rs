//! The errors of one reconcile, with the metric label and the failure class (how soon a retry
//! is worthwhile) of each.

use super::cache::CacheError;
use super::requeue::FailureClass;
use crate::eks::EksError;
use crate::iam::IamError;

/// Failures of one reconcile (Kubernetes or AWS); spec problems are statuses, not errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("IAM: {0}")]
    Iam(#[from] IamError),
    #[error("EKS: {0}")]
    Eks(#[from] EksError),
    #[error("Kubernetes API: {0}")]
    Kube(#[source] Box<kube::Error>),
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
    #[error(
        "role {role} cannot be deleted: it is held by {holders}; remove those, or set spec.deletionPolicy: Retain"
    )]
    RoleHeld { role: String, holders: String },
    #[error("{0}")]
    Cache(#[from] CacheError),
    #[error("the guardrail and namespace caches stopped before their first list (shutting down)")]
    PolicyCachesGone,
    #[error("{0}")]
    Account(#[from] crate::account::AccountRefusal),
}

impl From<kube::Error> for Error {
    fn from(e: kube::Error) -> Self {
        Error::Kube(Box::new(e))
    }
}

impl Error {
    /// Low-cardinality label for metrics.
    pub fn metric_label(&self) -> String {
        match self {
            Error::Iam(e) => format!("iam_{}", e.label()),
            Error::Eks(e) => format!("eks_{}", e.label()),
            Error::Kube(_) => "kube".into(),
            Error::Finalizer(inner) => match inner.as_ref() {
                kube::runtime::finalizer::Error::ApplyFailed(e)
                | kube::runtime::finalizer::Error::CleanupFailed(e) => e.metric_label(),
                _ => "finalizer".into(),
            },
            Error::RoleHeld { .. } => "role_held".into(),
            Error::Cache(_) => "cache".into(),
            Error::PolicyCachesGone => "policy_caches_gone".into(),
            Error::Account(_) => "account".into(),
        }
    }

    /// How soon trying again is worthwhile.
    pub fn failure_class(&self) -> FailureClass {
        match self {
            Error::Iam(IamError::Throttled { .. }) => FailureClass::Throttled,
            Error::Iam(e) if e.is_transient() => FailureClass::Transient,
            Error::Iam(_) | Error::RoleHeld { .. } | Error::Cache(_) | Error::Account(_) => {
                FailureClass::Persistent
            }
            Error::Eks(EksError::Throttled { .. }) => FailureClass::Throttled,
            Error::Eks(e) if e.is_transient() => FailureClass::Transient,
            Error::Eks(_) => FailureClass::Persistent,
            // Conflicts, timeouts and unavailability of the API server pass.
            Error::Kube(_) | Error::PolicyCachesGone => FailureClass::Transient,
            Error::Finalizer(inner) => match inner.as_ref() {
                kube::runtime::finalizer::Error::ApplyFailed(e)
                | kube::runtime::finalizer::Error::CleanupFailed(e) => e.failure_class(),
                _ => FailureClass::Transient,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttling_requeues_sooner_than_a_refusal() {
        let throttled = Error::Iam(IamError::Throttled {
            operation: "GetRole",
            message: String::new(),
        });
        let refused = Error::Iam(IamError::Refused {
            operation: "CreateRole",
            code: "AccessDenied".into(),
            message: String::new(),
        });
        assert_eq!(throttled.failure_class(), FailureClass::Throttled);
        assert_eq!(refused.failure_class(), FailureClass::Persistent);
        let wrapped = Error::Finalizer(Box::new(kube::runtime::finalizer::Error::ApplyFailed(
            throttled,
        )));
        assert_eq!(wrapped.failure_class(), FailureClass::Throttled);
    }
}
