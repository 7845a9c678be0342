//! Writing to IAM: one change of a diff, tags, and deleting a role hatrack owns.

use std::collections::BTreeMap;

use aws_sdk_iam::types::Tag;

use super::{DeleteOutcome, Iam, IamError};
use crate::role::{Change, Role};

impl Iam {
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
            Change::DeleteRolePolicy(name) => self.delete_inline_policy(role, name).await,
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
            Change::DetachRolePolicy(arn) => self.detach_policy(role, arn).await,
        }
    }

    /// Detaches a managed policy; one already detached is fine.
    async fn detach_policy(&self, role_name: &str, arn: &str) -> Result<(), IamError> {
        let detach = self
            .client
            .detach_role_policy()
            .role_name(role_name)
            .policy_arn(arn)
            .send();
        match self.call("DetachRolePolicy", detach).await {
            Ok(_) | Err(IamError::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Deletes an inline policy; one already gone is fine.
    async fn delete_inline_policy(&self, role_name: &str, name: &str) -> Result<(), IamError> {
        let delete = self
            .client
            .delete_role_policy()
            .role_name(role_name)
            .policy_name(name)
            .send();
        match self.call("DeleteRolePolicy", delete).await {
            Ok(_) | Err(IamError::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
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
                self.detach_policy(role_name, &arn).await?;
            }
            let inline = match self.inline_policy_names(role_name).await {
                Ok(n) => n,
                Err(IamError::NotFound { .. }) => return Ok(DeleteOutcome::AlreadyGone),
                Err(e) => return Err(e),
            };
            for name in inline {
                self.delete_inline_policy(role_name, &name).await?;
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
