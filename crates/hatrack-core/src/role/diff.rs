//! The IAM writes that take the role IAM has to the role a binding asks for.

use std::collections::BTreeMap;

use serde_json::Value;

use super::{ActualRole, Role};
use crate::policy;

/// One IAM write.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// CreateRole with trust, path, description, session, boundary and tags in one call.
    CreateRole,
    UpdateAssumeRolePolicy(Value),
    /// UpdateRole (description and max session duration travel together).
    UpdateRole {
        description: String,
        max_session_duration: i32,
    },
    PutPermissionsBoundary(String),
    TagRole(BTreeMap<String, String>),
    UntagRole(Vec<String>),
    PutRolePolicy {
        name: String,
        document: Value,
    },
    DeleteRolePolicy(String),
    AttachRolePolicy(String),
    DetachRolePolicy(String),
}

impl Change {
    /// The IAM operation name, for logs, Events and metrics.
    pub fn operation(&self) -> &'static str {
        match self {
            Change::CreateRole => "CreateRole",
            Change::UpdateAssumeRolePolicy(_) => "UpdateAssumeRolePolicy",
            Change::UpdateRole { .. } => "UpdateRole",
            Change::PutPermissionsBoundary(_) => "PutRolePermissionsBoundary",
            Change::TagRole(_) => "TagRole",
            Change::UntagRole(_) => "UntagRole",
            Change::PutRolePolicy { .. } => "PutRolePolicy",
            Change::DeleteRolePolicy(_) => "DeleteRolePolicy",
            Change::AttachRolePolicy(_) => "AttachRolePolicy",
            Change::DetachRolePolicy(_) => "DetachRolePolicy",
        }
    }
}

/// What the diff found besides the writes.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Diff {
    pub changes: Vec<Change>,
    /// The role has a boundary the spec no longer names. hatrack never removes boundaries (a
    /// security control); this is reported, not acted on.
    pub boundary_kept: Option<String>,
}

/// The IAM writes that take `actual` to `desired`. A role that does not exist needs
/// CreateRole and then its policies; one in sync needs nothing.
pub fn diff(actual: Option<&ActualRole>, desired: &Role) -> Diff {
    let mut changes = Vec::new();
    let Some(actual) = actual else {
        changes.push(Change::CreateRole);
        for (name, document) in &desired.inline_policies {
            changes.push(Change::PutRolePolicy {
                name: name.clone(),
                document: document.clone(),
            });
        }
        for arn in &desired.managed_policy_arns {
            changes.push(Change::AttachRolePolicy(arn.clone()));
        }
        return Diff {
            changes,
            boundary_kept: None,
        };
    };
    if !policy::equivalent(&actual.assume_role_policy, &desired.assume_role_policy) {
        changes.push(Change::UpdateAssumeRolePolicy(
            desired.assume_role_policy.clone(),
        ));
    }
    if actual.description != desired.description
        || actual.max_session_duration != desired.max_session_duration
    {
        changes.push(Change::UpdateRole {
            description: desired.description.clone(),
            max_session_duration: desired.max_session_duration,
        });
    }
    let mut boundary_kept = None;
    match (&actual.permissions_boundary, &desired.permissions_boundary) {
        (a, Some(d)) if a.as_ref() != Some(d) => {
            changes.push(Change::PutPermissionsBoundary(d.clone()))
        }
        (Some(a), None) => boundary_kept = Some(a.clone()),
        _ => {}
    }
    // Tags: set what differs, remove what the spec does not have (aws: tags are AWS's own).
    let to_set: BTreeMap<String, String> = desired
        .tags
        .iter()
        .filter(|(k, v)| actual.tags.get(*k) != Some(*v))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if !to_set.is_empty() {
        changes.push(Change::TagRole(to_set));
    }
    let to_remove: Vec<String> = actual
        .tags
        .keys()
        .filter(|k| !desired.tags.contains_key(*k) && !k.to_ascii_lowercase().starts_with("aws:"))
        .cloned()
        .collect();
    if !to_remove.is_empty() {
        changes.push(Change::UntagRole(to_remove));
    }
    for (name, document) in &desired.inline_policies {
        let same = actual
            .inline_policies
            .get(name)
            .is_some_and(|a| policy::equivalent(a, document));
        if !same {
            changes.push(Change::PutRolePolicy {
                name: name.clone(),
                document: document.clone(),
            });
        }
    }
    for name in actual.inline_policies.keys() {
        if !desired.inline_policies.contains_key(name) {
            changes.push(Change::DeleteRolePolicy(name.clone()));
        }
    }
    for arn in desired
        .managed_policy_arns
        .difference(&actual.managed_policy_arns)
    {
        changes.push(Change::AttachRolePolicy(arn.clone()));
    }
    for arn in actual
        .managed_policy_arns
        .difference(&desired.managed_policy_arns)
    {
        changes.push(Change::DetachRolePolicy(arn.clone()));
    }
    Diff {
        changes,
        boundary_kept,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::testing::*;
    use super::*;
    use crate::role::desired_role;
    use crate::settings::Settings;

    #[test]
    fn a_missing_role_is_created_with_its_policies() {
        let d = desired_role(&full(), &Settings::example()).unwrap();
        let ops: Vec<_> = diff(None, &d.role)
            .changes
            .iter()
            .map(Change::operation)
            .collect();
        assert_eq!(ops, ["CreateRole", "PutRolePolicy", "AttachRolePolicy"]);
    }

    #[test]
    fn a_role_in_sync_needs_no_writes_even_when_reordered() {
        let d = desired_role(&full(), &Settings::example()).unwrap();
        let mut actual = d.role.clone();
        // IAM may hand documents back with other ordering and singletons as strings.
        actual.inline_policies.insert("put-receipts".into(), json!({"Statement": {"Resource": "arn:aws:s3:::receipts/*", "Action": "s3:PutObject", "Effect": "Allow"}, "Version": "2012-10-17"}));
        let mut trust = actual.assume_role_policy.clone();
        trust["Statement"].as_array_mut().unwrap().reverse();
        actual.assume_role_policy = trust;
        assert_eq!(diff(Some(&actual), &d.role), Diff::default());
    }

    #[test]
    fn drift_in_every_field_is_corrected() {
        let d = desired_role(&full(), &Settings::example()).unwrap();
        let mut actual = d.role.clone();
        actual.assume_role_policy = json!({"Statement": [{"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"}]});
        actual.description = "edited".into();
        actual.permissions_boundary = None;
        actual.tags.insert("hand".into(), "made".into());
        actual.tags.insert("team".into(), "other".into());
        actual.inline_policies.insert("extra".into(), json!({}));
        actual.inline_policies.insert(
            "put-receipts".into(),
            json!({"Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}),
        );
        actual
            .managed_policy_arns
            .insert("arn:aws:iam::aws:policy/AdministratorAccess".into());
        actual
            .managed_policy_arns
            .remove("arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess");
        let ops: Vec<_> = diff(Some(&actual), &d.role)
            .changes
            .iter()
            .map(Change::operation)
            .collect();
        assert_eq!(
            ops,
            [
                "UpdateAssumeRolePolicy",
                "UpdateRole",
                "PutRolePermissionsBoundary",
                "TagRole",
                "UntagRole",
                "PutRolePolicy",
                "DeleteRolePolicy",
                "AttachRolePolicy",
                "DetachRolePolicy",
            ]
        );
    }

    #[test]
    fn a_boundary_is_never_removed() {
        let mut b = full();
        b.spec.permissions_boundary = None;
        let d = desired_role(&b, &Settings::example()).unwrap();
        let mut actual = d.role.clone();
        actual.permissions_boundary = Some("arn:aws:iam::111122223333:policy/boundary".into());
        let result = diff(Some(&actual), &d.role);
        assert!(result.changes.is_empty());
        assert_eq!(
            result.boundary_kept.as_deref(),
            Some("arn:aws:iam::111122223333:policy/boundary")
        );
    }
}
