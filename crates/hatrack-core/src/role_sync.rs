//! The decision half of syncing a role, without IAM: who owns a role (its ownership tags), and
//! the writes that take the role IAM has to the one a binding wants. The `hatrack` crate's
//! `sync` module reads the role, asks [`writes`], and makes exactly those calls.

use std::collections::BTreeMap;

use crate::naming;
use crate::role::{self, ActualRole, Diff, Role};
use crate::settings::Settings;

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
    pub fn of(settings: &Settings, namespace: &str, name: &str) -> Owner {
        Owner {
            cluster: settings.cluster_name.clone(),
            cluster_arn: settings.cluster_arn(),
            namespace: namespace.to_string(),
            name: name.to_string(),
        }
    }

    pub fn owns(&self, tags: &BTreeMap<String, String>) -> bool {
        naming::is_owned_by(tags, &self.cluster, &self.namespace, &self.name)
            && naming::arn_matches(tags, self.cluster_arn.as_deref())
    }
}

/// What syncing a role writes.
#[derive(Debug, Clone, PartialEq)]
pub enum Writes {
    /// A role of that name exists without the owner's tags: nothing may be written to it.
    NotOwned,
    /// These writes, in order (none when the role is in sync), and what the diff kept.
    Make(Diff),
}

/// The writes that take `actual` (the role IAM has under the desired name; `None`: none) to
/// `desired`, for `owner`. Ownership is decided first, so no write is ever planned for a role
/// someone else owns.
pub fn writes(actual: Option<&ActualRole>, desired: &Role, owner: &Owner) -> Writes {
    match actual {
        Some(a) if !owner.owns(&a.tags) => Writes::NotOwned,
        _ => Writes::Make(role::diff(actual, desired)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn owner() -> Owner {
        Owner::of(&Settings::example(), "payments", "reader")
    }

    fn desired() -> Role {
        let mut tags = naming::ownership_tags("prod-eu", "payments", "reader");
        tags.insert("team".into(), "payments".into());
        Role {
            role_name: "reader".into(),
            path: "/hatrack/".into(),
            arn: "arn:aws:iam::111122223333:role/hatrack/reader".into(),
            assume_role_policy: json!({"Version": "2012-10-17", "Statement": []}),
            inline_policies: [(
                "put".to_string(),
                json!({"Statement": [{"Effect": "Allow"}]}),
            )]
            .into(),
            managed_policy_arns: ["arn:aws:iam::aws:policy/ReadOnlyAccess".to_string()].into(),
            permissions_boundary: None,
            max_session_duration: 3600,
            description: "reader".into(),
            tags,
        }
    }

    /// The operations of the writes (`None`: not owned, nothing may be written).
    type Operations = Option<Vec<&'static str>>;

    fn operations(w: &Writes) -> Operations {
        match w {
            Writes::NotOwned => None,
            Writes::Make(d) => Some(d.changes.iter().map(|c| c.operation()).collect()),
        }
    }

    #[test]
    fn ownership_is_decided_before_any_write() {
        let with_tags = |edit: &dyn Fn(&mut BTreeMap<String, String>)| {
            let mut a = desired();
            edit(&mut a.tags);
            a
        };
        let missing = None;
        let in_sync = Some(desired());
        let drifted = Some(Role {
            description: "changed by hand".into(),
            inline_policies: BTreeMap::new(),
            ..desired()
        });
        let untagged = Some(with_tags(&|t| t.clear()));
        let other_binding = Some(with_tags(&|t| {
            t.insert(naming::TAG_NAME.into(), "writer".into());
        }));
        let other_cluster_arn = Some(with_tags(&|t| {
            t.insert(
                naming::TAG_CLUSTER_ARN.into(),
                "arn:aws:eks:us-east-1:111122223333:cluster/prod-eu".into(),
            );
        }));
        let cases = [
            (
                "no role: created, then its policies",
                missing,
                Some(vec!["CreateRole", "PutRolePolicy", "AttachRolePolicy"]),
            ),
            ("in sync: nothing", in_sync, Some(Vec::new())),
            (
                "drift in an owned role: corrected",
                drifted,
                Some(vec!["UpdateRole", "PutRolePolicy"]),
            ),
            ("a role without tags: not ours", untagged, None),
            ("another binding's role", other_binding, None),
            (
                // Settings::example() has no cluster ARN: any ARN tag is accepted.
                "an ARN tag where the cluster has no ARN: ours",
                other_cluster_arn,
                Some(vec!["UntagRole"]),
            ),
        ];
        for (case, actual, expected) in cases {
            let got = writes(actual.as_ref(), &desired(), &owner());
            assert_eq!(operations(&got), expected, "{case}");
        }
    }

    #[test]
    fn a_role_tagged_with_another_clusters_arn_is_not_owned() {
        let mut owner = owner();
        owner.cluster_arn = Some("arn:aws:eks:eu-west-1:111122223333:cluster/prod-eu".into());
        let mut actual = desired();
        actual.tags.insert(
            naming::TAG_CLUSTER_ARN.into(),
            "arn:aws:eks:us-east-1:111122223333:cluster/prod-eu".into(),
        );
        assert_eq!(writes(Some(&actual), &desired(), &owner), Writes::NotOwned);
        actual.tags.insert(
            naming::TAG_CLUSTER_ARN.into(),
            owner.cluster_arn.clone().unwrap_or_default(),
        );
        // Same ARN: ours; the tag the spec does not carry goes.
        assert_eq!(
            operations(&writes(Some(&actual), &desired(), &owner)),
            Some(vec!["UntagRole"])
        );
    }

    #[test]
    fn a_boundary_the_spec_dropped_is_kept_and_reported() {
        let mut actual = desired();
        actual.permissions_boundary = Some("arn:aws:iam::111122223333:policy/b".into());
        let Writes::Make(diff) = writes(Some(&actual), &desired(), &owner()) else {
            panic!("an owned role is written to");
        };
        assert!(diff.changes.is_empty(), "{:?}", diff.changes);
        assert_eq!(
            diff.boundary_kept.as_deref(),
            Some("arn:aws:iam::111122223333:policy/b")
        );
    }
}
