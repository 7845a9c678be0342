//! Reading roles and policies from IAM.

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_iam::types;
use serde_json::Value;

use super::{Iam, IamError};
use crate::policy;
use crate::role::ActualRole;

impl Iam {
    /// GetRole, or `None` when there is no role of that name.
    async fn fetch_role(&self, role_name: &str) -> Result<Option<types::Role>, IamError> {
        let get = self.client.get_role().role_name(role_name).send();
        match self.call("GetRole", get).await {
            Ok(out) => out.role.map(Some).ok_or_else(|| IamError::BadResponse {
                operation: "GetRole",
                message: "response has no role".into(),
            }),
            Err(IamError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The role as IAM has it, or `None` when there is no role of that name.
    #[tracing::instrument(skip(self))]
    pub async fn get_role(&self, role_name: &str) -> Result<Option<ActualRole>, IamError> {
        let Some(role) = self.fetch_role(role_name).await? else {
            return Ok(None);
        };
        let assume_role_policy = match role.assume_role_policy_document() {
            Some(doc) => policy::decode_document(doc).map_err(|message| IamError::BadResponse {
                operation: "GetRole",
                message,
            })?,
            None => Value::Null,
        };
        let tags = tags_of(&role);
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

    pub(super) async fn inline_policy_names(
        &self,
        role_name: &str,
    ) -> Result<Vec<String>, IamError> {
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

    pub(super) async fn attached_policies(
        &self,
        role_name: &str,
    ) -> Result<BTreeSet<String>, IamError> {
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

    pub(super) async fn instance_profiles(&self, role_name: &str) -> Result<Vec<String>, IamError> {
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
        let Some(role) = self.fetch_role(role_name).await? else {
            return Ok(None);
        };
        let tags = tags_of(&role);
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

fn tags_of(role: &types::Role) -> BTreeMap<String, String> {
    role.tags()
        .iter()
        .map(|t| (t.key().to_string(), t.value().to_string()))
        .collect()
}
