//! Orphans: AWS objects tagged as this cluster's whose IAMRoleBinding no longer exists. This
//! is the judging, without I/O: which listed candidates are orphans, given the live bindings.
//! The controller's sweep (`hatrack::controller::orphans`) and `hatrack orphans` list the
//! candidates and call [`judge`]. Other kinds of AWS objects hatrack tags join by adding an
//! [`OrphanKind`] and a lister that yields [`Candidate`]s.

use std::collections::{BTreeMap, HashMap, HashSet};

use kube_core::ResourceExt;
use serde::Serialize;

use crate::crd::{IAMAccount, IAMRoleBinding};
use crate::naming;

/// What kind of AWS object an orphan is. Ordered as they are deleted: an association names a
/// role, so it goes first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum OrphanKind {
    /// An EKS Pod Identity association of this cluster (name: its id).
    PodIdentityAssociation,
    /// An IAM role (name: the role name).
    Role,
}

/// An AWS object hatrack tagged as this cluster's, with its ownership tags, as a lister found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub kind: OrphanKind,
    pub account_id: String,
    pub name: String,
    pub arn: String,
    pub tags: BTreeMap<String, String>,
    /// An association's ServiceAccount.
    pub service_account: Option<String>,
    /// The roles an association names (its role, and its target role if any).
    pub role_arns: Vec<String>,
}

/// An object whose binding is gone.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Orphan {
    pub kind: OrphanKind,
    pub account_id: String,
    pub name: String,
    pub arn: String,
    /// The binding its tags name.
    pub namespace: String,
    pub binding: String,
    /// An association's ServiceAccount (in `namespace`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account: Option<String>,
}

/// Where each live binding's role lives: (namespace, name) → account id, `None` when the
/// binding names an IAMAccount that is not known (its role could be anywhere).
pub type LiveBindings = HashMap<(String, String), Option<String>>;

/// The live bindings, from a fresh list and the known IAMAccounts.
pub fn live_bindings(
    bindings: &[IAMRoleBinding],
    accounts: &[IAMAccount],
    home_account_id: &str,
) -> LiveBindings {
    bindings
        .iter()
        .map(|b| {
            let account = match b.spec.account.as_deref() {
                None => Some(home_account_id.to_string()),
                Some(name) => accounts
                    .iter()
                    .find(|a| a.name_any() == name)
                    .map(|a| a.spec.account_id.clone()),
            };
            ((b.namespace().unwrap_or_default(), b.name_any()), account)
        })
        .collect()
}

/// Whether `live` has a binding whose role may be `(account_id, namespace, name)`.
fn claimed(live: &LiveBindings, account_id: &str, namespace: &str, name: &str) -> bool {
    live.get(&(namespace.to_string(), name.to_string()))
        .is_some_and(|a| a.as_deref().is_none_or(|a| a == account_id))
}

/// The candidates that are orphans: tagged with this cluster, not retained on purpose, of a
/// namespace in `scope` (`None`: all), and with no live binding that owns them there.
/// An association is not an orphan while a role it names is retained (a role candidate
/// carrying the retained mark): the binding was deleted with `deletionPolicy: Retain`.
pub fn judge(
    cluster: &str,
    cluster_arn: Option<&str>,
    candidates: &[Candidate],
    live: &LiveBindings,
    scope: Option<&str>,
) -> Vec<Orphan> {
    let retained_roles: HashSet<&str> = candidates
        .iter()
        .filter(|c| c.kind == OrphanKind::Role && c.tags.contains_key(naming::TAG_RETAINED))
        .map(|c| c.arn.as_str())
        .collect();
    let mut out: Vec<Orphan> = candidates
        .iter()
        .filter_map(|c| {
            let association = c.kind == OrphanKind::PodIdentityAssociation;
            // The cluster ARN tag must match too (both absent, or equal): a same-named
            // cluster in another region or account keeps its roles, even legacy ones. An
            // association is listed from this very cluster: its name tag is enough.
            if c.tags.get(naming::TAG_CLUSTER).map(String::as_str) != Some(cluster)
                || (!association
                    && c.tags.get(naming::TAG_CLUSTER_ARN).map(String::as_str) != cluster_arn)
                || c.tags.contains_key(naming::TAG_RETAINED)
                || c.role_arns
                    .iter()
                    .any(|r| retained_roles.contains(r.as_str()))
            {
                return None;
            }
            let namespace = c.tags.get(naming::TAG_NAMESPACE)?;
            let binding = c.tags.get(naming::TAG_NAME)?;
            // An association lives in the cluster's account whichever account its binding's
            // role is in: any live binding of that name owns it.
            let owned = if association {
                live.contains_key(&(namespace.clone(), binding.clone()))
            } else {
                claimed(live, &c.account_id, namespace, binding)
            };
            if scope.is_some_and(|s| s != namespace) || owned {
                return None;
            }
            Some(Orphan {
                kind: c.kind,
                account_id: c.account_id.clone(),
                name: c.name.clone(),
                arn: c.arn.clone(),
                namespace: namespace.clone(),
                binding: binding.clone(),
                service_account: c.service_account.clone(),
            })
        })
        .collect();
    out.sort();
    out
}

/// The association ids live bindings' statuses record.
pub fn recorded_associations(bindings: &[IAMRoleBinding]) -> HashSet<String> {
    bindings
        .iter()
        .filter_map(|b| b.status.as_ref())
        .flat_map(|s| s.pod_identity_associations.iter())
        .map(|a| a.association_id.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidate(account: &str, tags: &[(&str, &str)]) -> Candidate {
        Candidate {
            kind: OrphanKind::Role,
            account_id: account.into(),
            name: "r".into(),
            arn: format!("arn:aws:iam::{account}:role/hatrack/r"),
            tags: tags
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            service_account: None,
            role_arns: Vec::new(),
        }
    }

    fn association(ns: &str, binding: &str, role: &str) -> Candidate {
        Candidate {
            kind: OrphanKind::PodIdentityAssociation,
            account_id: "111".into(),
            name: format!("a-{binding}"),
            arn: format!("arn:aws:eks:eu-west-1:111:podidentityassociation/prod/a-{binding}"),
            tags: naming::ownership_tags("prod", ns, binding),
            service_account: Some("sa".into()),
            role_arns: vec![role.into()],
        }
    }

    fn owned(account: &str, cluster: &str, ns: &str, name: &str) -> Candidate {
        let mut c = candidate(account, &[]);
        c.tags = naming::ownership_tags(cluster, ns, name);
        c
    }

    fn live(entries: &[(&str, &str, Option<&str>)]) -> LiveBindings {
        entries
            .iter()
            .map(|(ns, n, a)| ((ns.to_string(), n.to_string()), a.map(str::to_string)))
            .collect()
    }

    #[test]
    fn a_role_without_its_binding_is_an_orphan() {
        let c = [owned("111", "prod", "team", "gone")];
        let found = judge(
            "prod",
            None,
            &c,
            &live(&[("team", "kept", Some("111"))]),
            None,
        );
        assert_eq!(found.len(), 1);
        assert_eq!(
            (found[0].namespace.as_str(), found[0].binding.as_str()),
            ("team", "gone")
        );
    }

    #[test]
    fn a_role_with_its_binding_in_that_account_is_not() {
        let c = [owned("111", "prod", "team", "b")];
        assert!(judge("prod", None, &c, &live(&[("team", "b", Some("111"))]), None).is_empty());
        // The binding's IAMAccount is unknown: its role could be anywhere, so never an orphan.
        assert!(judge("prod", None, &c, &live(&[("team", "b", None)]), None).is_empty());
        // The binding lives in another account now: the role left here is an orphan.
        assert_eq!(
            judge("prod", None, &c, &live(&[("team", "b", Some("222"))]), None).len(),
            1
        );
    }

    #[test]
    fn other_clusters_retained_roles_and_untagged_roles_are_never_orphans() {
        let mut retained = owned("111", "prod", "team", "gone");
        retained
            .tags
            .insert(naming::TAG_RETAINED.into(), "true".into());
        let c = [
            owned("111", "staging", "team", "gone"),
            retained,
            candidate("111", &[("team", "x")]),
            candidate("111", &[(naming::TAG_CLUSTER, "prod")]),
        ];
        assert!(judge("prod", None, &c, &live(&[]), None).is_empty());
    }

    #[test]
    fn a_same_named_cluster_elsewhere_keeps_its_roles() {
        let ours = "arn:aws:eks:eu-west-1:111:cluster/prod";
        let theirs = "arn:aws:eks:us-east-1:111:cluster/prod";
        let tagged = |arn: Option<&str>| {
            let mut c = owned("111", "prod", "team", "gone");
            if let Some(arn) = arn {
                c.tags.insert(naming::TAG_CLUSTER_ARN.into(), arn.into());
            }
            c
        };
        let c = [tagged(Some(theirs)), tagged(None)];
        // Neither the other region's role nor a legacy role without the ARN tag is ours.
        assert!(judge("prod", Some(ours), &c, &live(&[]), None).is_empty());
        assert_eq!(
            judge("prod", Some(ours), &[tagged(Some(ours))], &live(&[]), None).len(),
            1
        );
        // A cluster without a region owns only roles without an ARN tag.
        assert_eq!(judge("prod", None, &c, &live(&[]), None).len(), 1);
    }

    #[test]
    fn a_namespace_scoped_sweep_judges_only_its_namespace() {
        let c = [
            owned("111", "prod", "a", "x"),
            owned("111", "prod", "b", "x"),
        ];
        let found = judge("prod", None, &c, &live(&[]), Some("b"));
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].namespace, "b");
    }

    #[test]
    fn an_association_without_its_binding_is_an_orphan_and_goes_before_roles() {
        let role = owned("111", "prod", "team", "gone");
        let c = [
            role.clone(),
            association("team", "gone", &role.arn),
            association("team", "kept", "arn:aws:iam::222:role/hatrack/k"),
        ];
        // The cluster has an ARN: associations carry no ARN tag and are still judged (they
        // were listed from this cluster); the role without one is a legacy role, not ours.
        let found = judge(
            "prod",
            Some("arn:aws:eks:eu-west-1:111:cluster/prod"),
            &c,
            &live(&[("team", "kept", Some("222"))]),
            None,
        );
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].kind, OrphanKind::PodIdentityAssociation);
        assert_eq!(found[0].service_account.as_deref(), Some("sa"));
        let found = judge("prod", None, &c, &live(&[]), None);
        let kinds: Vec<OrphanKind> = found.iter().map(|o| o.kind).collect();
        assert_eq!(
            kinds,
            [
                OrphanKind::PodIdentityAssociation,
                OrphanKind::PodIdentityAssociation,
                OrphanKind::Role
            ]
        );
    }

    #[test]
    fn an_association_of_a_retained_role_or_another_cluster_is_not_an_orphan() {
        let mut role = owned("111", "prod", "team", "gone");
        role.tags.insert(naming::TAG_RETAINED.into(), "true".into());
        let mut other = association("team", "x", "arn:aws:iam::111:role/x");
        other.tags = naming::ownership_tags("staging", "team", "x");
        let c = [role.clone(), association("team", "gone", &role.arn), other];
        assert!(judge("prod", None, &c, &live(&[]), None).is_empty());
    }

    #[test]
    fn live_bindings_know_their_account() {
        let b: IAMRoleBinding = serde_json::from_value(serde_json::json!({
            "apiVersion": "hatrack.dev/v1alpha1", "kind": "IAMRoleBinding",
            "metadata": {"name": "b", "namespace": "t"},
            "spec": {"serviceAccounts": ["a"], "account": "missing"}
        }))
        .unwrap();
        let home: IAMRoleBinding = serde_json::from_value(serde_json::json!({
            "apiVersion": "hatrack.dev/v1alpha1", "kind": "IAMRoleBinding",
            "metadata": {"name": "h", "namespace": "t"},
            "spec": {"serviceAccounts": ["a"]}
        }))
        .unwrap();
        let l = live_bindings(&[b, home], &[], "111");
        assert_eq!(l[&("t".to_string(), "b".to_string())], None);
        assert_eq!(l[&("t".to_string(), "h".to_string())], Some("111".into()));
    }
}
