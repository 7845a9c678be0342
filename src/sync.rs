//! The IAM half of a reconcile, free of Kubernetes: make the role in IAM match a desired role
//! (read, decide the writes with [`crate::role_sync::writes`] (pure), make them), or delete
//! it, and never touch a role someone else owns.

use crate::iam::{DeleteOutcome, Iam, IamError};
use crate::role::{Change, DesiredRole};
pub use crate::role_sync::Owner;
use crate::role_sync::{self, Writes};

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

/// Brings the role to the desired state: reads it, makes the writes [`role_sync::writes`]
/// decides (none for a role someone else owns), and decides again from a fresh read when a
/// create finds the role made meanwhile.
pub async fn sync_role(
    iam: &Iam,
    desired: &DesiredRole,
    owner: &Owner,
) -> Result<SyncOutcome, IamError> {
    let mut actual = iam.get_role(&desired.role.role_name).await?;
    let mut retried_create = false;
    loop {
        let diff = match role_sync::writes(actual.as_ref(), &desired.role, owner) {
            Writes::NotOwned => return Ok(SyncOutcome::NotOwned),
            Writes::Make(diff) => diff,
        };
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
