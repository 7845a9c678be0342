//! The IAM half of a reconcile, free of Kubernetes: make the role in IAM match a desired role
//! (reads, pure diff, minimal writes), or delete it, and never touch a role someone else owns.

use crate::iam::{DeleteOutcome, Iam, IamError};
use crate::naming;
use crate::role::{self, Change, DesiredRole};

/// Who owns a role: the identity in its ownership tags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub cluster: String,
    /// The cluster's ARN when known: a role tagged with another cluster's ARN is not ours.
    pub cluster_arn: Option<String>,
    pub namespace: String,
    pub name: String,
}

impl Owner {
    /// The owner of binding `namespace`/`name`'s role in this cluster.
    pub fn of(settings: &crate::settings::Settings, namespace: &str, name: &str) -> Owner {
        Owner {
            cluster: settings.cluster_name.clone(),
            cluster_arn: settings.cluster_arn(),
            namespace: namespace.to_string(),
            name: name.to_string(),
        }
    }

    pub fn owns(&self, tags: &std::collections::BTreeMap<String, String>) -> bool {
        naming::is_owned_by(tags, &self.cluster, &self.namespace, &self.name)
            && naming::arn_matches(tags, self.cluster_arn.as_deref())
    }
}

/// What a sync did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncOutcome {
    /// The role matches the spec. `writes` are the IAM calls made (empty when it already did).
    Synced {
        writes: Vec<&'static str>,
        created: bool,
        /// A boundary the spec no longer names, which hatrack keeps.
        boundary_kept: Option<String>,
    },
    /// A role of that name exists without this owner's tags; nothing was written.
    NotOwned,
}

/// Brings the role to the desired state.
pub async fn sync_role(
    iam: &Iam,
    desired: &DesiredRole,
    owner: &Owner,
) -> Result<SyncOutcome, IamError> {
    let mut actual = iam.get_role(&desired.role.role_name).await?;
    let mut retried_create = false;
    loop {
        if let Some(a) = &actual
            && !owner.owns(&a.tags)
        {
            return Ok(SyncOutcome::NotOwned);
        }
        let diff = role::diff(actual.as_ref(), &desired.role);
        let mut writes = Vec::new();
        let mut raced = false;
        for change in &diff.changes {
            match iam.apply(&desired.role, change).await {
                Ok(()) => writes.push(change.operation()),
                // Created meanwhile (an interrupted earlier reconcile, or another replica):
                // read it again and diff against what is really there.
                Err(IamError::AlreadyExists { .. })
                    if *change == Change::CreateRole && !retried_create =>
                {
                    raced = true;
                    break;
                }
                Err(e) => return Err(e),
            }
        }
        if raced {
            retried_create = true;
            actual = iam.get_role(&desired.role.role_name).await?;
            continue;
        }
        return Ok(SyncOutcome::Synced {
            created: writes.contains(&"CreateRole"),
            writes,
            boundary_kept: diff.boundary_kept,
        });
    }
}

/// What deleting did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CleanupOutcome {
    Deleted,
    AlreadyGone,
    /// The role is not this owner's: left in place.
    NotOwned,
    /// Something foreign (an instance profile) holds the role: left in place.
    HeldBy(Vec<String>),
}

/// Deletes the role if this owner owns it.
pub async fn delete_owned_role(
    iam: &Iam,
    role_name: &str,
    owner: &Owner,
) -> Result<CleanupOutcome, IamError> {
    match iam.get_role(role_name).await? {
        None => Ok(CleanupOutcome::AlreadyGone),
        Some(actual) if !owner.owns(&actual.tags) => Ok(CleanupOutcome::NotOwned),
        Some(_) => Ok(match iam.delete_role(role_name).await? {
            DeleteOutcome::Deleted => CleanupOutcome::Deleted,
            DeleteOutcome::AlreadyGone => CleanupOutcome::AlreadyGone,
            DeleteOutcome::HeldBy(h) => CleanupOutcome::HeldBy(h),
        }),
    }
}
