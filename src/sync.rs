//! The IAM half of a reconcile, free of Kubernetes: make the writes decided for a role
//! ([`crate::role_sync::writes`], pure), or read, decide and write in one go, or delete it;
//! never touch a role someone else owns.

use crate::iam::{DeleteOutcome, Iam, IamError};
use crate::role::{Change, DesiredRole, Diff};
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

/// Brings the role to the desired state: reads it, decides the writes with
/// [`role_sync::writes`] (none for a role someone else owns) and makes them ([`make_writes`]).
pub async fn sync_role(
    iam: &Iam,
    desired: &DesiredRole,
    owner: &Owner,
) -> Result<SyncOutcome, IamError> {
    let actual = iam.get_role(&desired.role.role_name).await?;
    match role_sync::writes(actual.as_ref(), &desired.role, owner) {
        Writes::NotOwned => Ok(SyncOutcome::NotOwned),
        Writes::Make(diff) => make_writes(iam, desired, owner, diff).await,
    }
}

/// Makes the writes decided for the role, in order; when a create finds the role made
/// meanwhile (an interrupted earlier reconcile, or another replica), reads it again and
/// decides again from what is really there (once).
pub async fn make_writes(
    iam: &Iam,
    desired: &DesiredRole,
    owner: &Owner,
    decided: Diff,
) -> Result<SyncOutcome, IamError> {
    let mut diff = decided;
    let mut retried_create = false;
    loop {
        let mut writes = Vec::new();
        let mut raced = false;
        for change in &diff.changes {
            match iam.apply(&desired.role, change).await {
                Ok(()) => writes.push(change.operation()),
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
            let actual = iam.get_role(&desired.role.role_name).await?;
            diff = match role_sync::writes(actual.as_ref(), &desired.role, owner) {
                Writes::NotOwned => return Ok(SyncOutcome::NotOwned),
                Writes::Make(diff) => diff,
            };
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
