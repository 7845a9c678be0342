//! EKS Pod Identity associations, pure: the ones a binding asks for (one per ServiceAccount,
//! naming the binding's role, tagged as the binding's), which of the cluster's associations
//! must be read to know, and the smallest set of EKS writes from what is there to what is
//! wanted. An association hatrack does not own is never written: it is reported.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::crd::IAMRoleBinding;
use crate::crd::TrustMechanism;
use crate::naming;
use crate::settings::Settings;

pub mod chain;

/// An association as `ListPodIdentityAssociations` gives it (no role, no tags).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssociationSummary {
    pub id: String,
    pub arn: String,
    pub namespace: String,
    pub service_account: String,
}

/// An association as `DescribePodIdentityAssociation` gives it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ActualAssociation {
    pub id: String,
    pub arn: String,
    pub namespace: String,
    pub service_account: String,
    pub role_arn: String,
    pub tags: BTreeMap<String, String>,
    /// The role EKS chains to from `role_arn` (cross-account Pod Identity), if any.
    pub target_role_arn: Option<String>,
    /// The id EKS made for this association, which a target role's trust must require
    /// (`sts:ExternalId`); present only with a target role.
    pub external_id: Option<String>,
}

/// What a binding asks for: an association per ServiceAccount to `role_arn`, with `tags`.
/// Serialises to the `plan` output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DesiredAssociations {
    pub cluster: String,
    pub namespace: String,
    pub service_accounts: BTreeSet<String>,
    pub role_arn: String,
    /// The binding's role in another account, chained to from `role_arn` (see [`chain`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_role_arn: Option<String>,
    pub tags: BTreeMap<String, String>,
}

/// One association as `hatrack plan` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PlannedAssociation {
    pub cluster: String,
    pub namespace: String,
    pub service_account: String,
    pub role_arn: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_role_arn: Option<String>,
    pub tags: BTreeMap<String, String>,
}

impl DesiredAssociations {
    /// One entry per ServiceAccount, as `plan` prints them.
    pub fn planned(&self) -> Vec<PlannedAssociation> {
        self.service_accounts
            .iter()
            .map(|sa| PlannedAssociation {
                cluster: self.cluster.clone(),
                namespace: self.namespace.clone(),
                service_account: sa.clone(),
                role_arn: self.role_arn.clone(),
                target_role_arn: self.target_role_arn.clone(),
                tags: self.tags.clone(),
            })
            .collect()
    }
}

/// Whether a binding's role is for EKS Pod Identity (its own trust, or the default).
pub fn uses_pod_identity(binding: &IAMRoleBinding, settings: &Settings) -> bool {
    match &binding.spec.trust {
        Some(t) => t.pod_identity.is_some(),
        None => settings
            .default_trust
            .contains(&TrustMechanism::PodIdentity),
    }
}

/// The associations a binding asks for, or `None` when it does not use Pod Identity.
pub fn desired(
    binding: &IAMRoleBinding,
    settings: &Settings,
    role_arn: &str,
) -> Option<DesiredAssociations> {
    if !uses_pod_identity(binding, settings) {
        return None;
    }
    let namespace = binding.metadata.namespace.clone().unwrap_or_default();
    let name = binding.metadata.name.clone().unwrap_or_default();
    Some(DesiredAssociations {
        cluster: settings.cluster_name.clone(),
        tags: naming::ownership_tags(&settings.cluster_name, &namespace, &name),
        namespace,
        service_accounts: binding.spec.service_accounts.iter().cloned().collect(),
        role_arn: role_arn.to_string(),
        target_role_arn: None,
    })
}

/// Which listed associations of the namespace must be described (for their role and tags):
/// those of ServiceAccounts the binding wants and those its status records as its own; and,
/// when the spec changed since the status was written (`spec_changed`), also those of
/// ServiceAccounts no other binding claims: an association of ours whose ServiceAccount left
/// the spec before its creation reached the status (a crash between the two). Only then,
/// so that a resync does not read every unbound ServiceAccount's association of the
/// namespace. The ones of ServiceAccounts that other bindings claim are theirs to look at.
pub fn to_describe<'a>(
    listed: &'a [AssociationSummary],
    wanted: &BTreeSet<String>,
    recorded: &BTreeSet<String>,
    spec_changed: bool,
    claimed_by_another: impl Fn(&str) -> bool,
) -> Vec<&'a AssociationSummary> {
    listed
        .iter()
        .filter(|a| {
            wanted.contains(&a.service_account)
                || recorded.contains(&a.service_account)
                || (spec_changed && !claimed_by_another(&a.service_account))
        })
        .collect()
}

/// One EKS write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Create {
        service_account: String,
    },
    /// Points the association at the wanted role and target role.
    UpdateRole {
        id: String,
        service_account: String,
        from: String,
        /// Its target role before (to clear when none is wanted).
        from_target: Option<String>,
    },
    Delete {
        id: String,
        service_account: String,
    },
}

impl Change {
    /// The EKS operation this change is.
    pub fn operation(&self) -> &'static str {
        match self {
            Change::Create { .. } => "CreatePodIdentityAssociation",
            Change::UpdateRole { .. } => "UpdatePodIdentityAssociation",
            Change::Delete { .. } => "DeletePodIdentityAssociation",
        }
    }
}

/// An association the binding wants for a ServiceAccount, held by someone else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Foreign {
    pub service_account: String,
    pub id: String,
    pub role_arn: String,
    /// Who holds it, as far as its tags say.
    pub holder: String,
}

/// The writes that bring the associations to what the binding wants, and what they cannot.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    pub changes: Vec<Change>,
    /// Wanted ServiceAccounts whose association someone else owns: never written.
    pub foreign: Vec<Foreign>,
    /// The binding's own associations that are already right.
    pub kept: Vec<ActualAssociation>,
}

/// Who holds a foreign association, from its tags.
fn holder(tags: &BTreeMap<String, String>, cluster: &str) -> String {
    let tag = |k: &str| tags.get(k).map(String::as_str).unwrap_or("?");
    match tags.get(naming::TAG_CLUSTER) {
        Some(c) if c == cluster => format!(
            "IAMRoleBinding {}/{} of this cluster",
            tag(naming::TAG_NAMESPACE),
            tag(naming::TAG_NAME)
        ),
        Some(c) => format!("hatrack of cluster {c:?}"),
        None => "not hatrack (no hatrack.dev/ tags)".to_string(),
    }
}

/// Diffs the described associations (`actual`, at most one per ServiceAccount, as EKS allows)
/// against what the binding wants (`None`: nothing, e.g. no Pod Identity any more). Owned
/// means carrying exactly this binding's ownership tags.
pub fn diff(
    want: Option<&DesiredAssociations>,
    actual: &[ActualAssociation],
    cluster: &str,
    namespace: &str,
    name: &str,
) -> Plan {
    let mut plan = Plan::default();
    let owned = |a: &ActualAssociation| naming::is_owned_by(&a.tags, cluster, namespace, name);
    let by_sa: BTreeMap<&str, &ActualAssociation> = actual
        .iter()
        .map(|a| (a.service_account.as_str(), a))
        .collect();
    if let Some(want) = want {
        for sa in &want.service_accounts {
            match by_sa.get(sa.as_str()) {
                None => plan.changes.push(Change::Create {
                    service_account: sa.clone(),
                }),
                Some(a) if !owned(a) => plan.foreign.push(Foreign {
                    service_account: sa.clone(),
                    id: a.id.clone(),
                    role_arn: a.role_arn.clone(),
                    holder: holder(&a.tags, cluster),
                }),
                Some(a)
                    if a.role_arn != want.role_arn || a.target_role_arn != want.target_role_arn =>
                {
                    plan.changes.push(Change::UpdateRole {
                        id: a.id.clone(),
                        service_account: sa.clone(),
                        from: a.role_arn.clone(),
                        from_target: a.target_role_arn.clone(),
                    })
                }
                Some(a) => plan.kept.push((*a).clone()),
            }
        }
    }
    for a in actual {
        let wanted = want.is_some_and(|w| w.service_accounts.contains(&a.service_account));
        if !wanted && owned(a) {
            plan.changes.push(Change::Delete {
                id: a.id.clone(),
                service_account: a.service_account.clone(),
            });
        }
    }
    plan
}

/// The Ready message for associations someone else holds.
pub fn foreign_message(foreign: &[Foreign]) -> Option<String> {
    if foreign.is_empty() {
        return None;
    }
    let each: Vec<String> = foreign
        .iter()
        .map(|f| {
            format!(
                "ServiceAccount {:?} already has EKS Pod Identity association {} (role {}), held by {}",
                f.service_account, f.id, f.role_arn, f.holder
            )
        })
        .collect();
    Some(format!(
        "{}; hatrack never modifies an association it does not own: delete it, or unbind the ServiceAccount",
        each.join("; ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ROLE: &str = "arn:aws:iam::111122223333:role/hatrack/shop-web-0123456789ab";

    fn binding(spec: serde_json::Value) -> IAMRoleBinding {
        serde_json::from_value(json!({
            "apiVersion": "hatrack.dev/v1alpha1", "kind": "IAMRoleBinding",
            "metadata": {"name": "app", "namespace": "team"},
            "spec": spec
        }))
        .unwrap()
    }

    fn want(sas: &[&str]) -> DesiredAssociations {
        let b = binding(json!({"serviceAccounts": sas, "trust": {"podIdentity": {}}}));
        desired(&b, &Settings::example(), ROLE).unwrap()
    }

    fn assoc(sa: &str, role: &str, owner: Option<(&str, &str, &str)>) -> ActualAssociation {
        ActualAssociation {
            id: format!("a-{sa}"),
            arn: format!(
                "arn:aws:eks:eu-west-1:111122223333:podidentityassociation/prod-eu/a-{sa}"
            ),
            namespace: "team".into(),
            service_account: sa.into(),
            role_arn: role.into(),
            tags: owner
                .map(|(c, n, b)| naming::ownership_tags(c, n, b))
                .unwrap_or_default(),
            ..Default::default()
        }
    }

    fn ours(sa: &str) -> ActualAssociation {
        assoc(sa, ROLE, Some(("prod-eu", "team", "app")))
    }

    fn run(want: Option<&DesiredAssociations>, actual: &[ActualAssociation]) -> Plan {
        diff(want, actual, "prod-eu", "team", "app")
    }

    #[test]
    fn only_pod_identity_bindings_want_associations() {
        let s = Settings::example();
        let irsa = binding(json!({"serviceAccounts": ["web"], "trust": {"irsa": {}}}));
        assert!(desired(&irsa, &s, ROLE).is_none());
        let default = binding(json!({"serviceAccounts": ["web"]}));
        assert!(
            desired(&default, &s, ROLE).is_none(),
            "default trust is irsa"
        );
        let mut pod_default = s.clone();
        pod_default.default_trust = vec![TrustMechanism::PodIdentity];
        let d = desired(&default, &pod_default, ROLE).unwrap();
        assert_eq!(d.service_accounts, BTreeSet::from(["web".to_string()]));
        assert_eq!(d.cluster, "prod-eu");
        assert_eq!(d.tags, naming::ownership_tags("prod-eu", "team", "app"));
        let both = binding(
            json!({"serviceAccounts": ["a", "b"], "trust": {"irsa": {}, "podIdentity": {}}}),
        );
        assert_eq!(desired(&both, &s, ROLE).unwrap().service_accounts.len(), 2);
    }

    #[test]
    fn missing_associations_are_created_and_right_ones_kept() {
        let plan = run(Some(&want(&["api", "web"])), &[ours("web")]);
        assert_eq!(
            plan.changes,
            vec![Change::Create {
                service_account: "api".into()
            }]
        );
        assert_eq!(plan.kept, vec![ours("web")]);
        assert!(plan.foreign.is_empty());
        assert_eq!(run(Some(&want(&["web"])), &[ours("web")]).changes, vec![]);
    }

    #[test]
    fn a_changed_role_is_updated_in_place() {
        let stale = assoc(
            "web",
            "arn:aws:iam::111122223333:role/old",
            Some(("prod-eu", "team", "app")),
        );
        let plan = run(Some(&want(&["web"])), &[stale]);
        assert_eq!(
            plan.changes,
            vec![Change::UpdateRole {
                id: "a-web".into(),
                service_account: "web".into(),
                from: "arn:aws:iam::111122223333:role/old".into(),
                from_target: None,
            }]
        );
    }

    #[test]
    fn own_associations_of_unbound_service_accounts_are_deleted() {
        let plan = run(Some(&want(&["web"])), &[ours("web"), ours("gone")]);
        assert_eq!(
            plan.changes,
            vec![Change::Delete {
                id: "a-gone".into(),
                service_account: "gone".into()
            }]
        );
        // No Pod Identity any more (or cleanup): every own association goes.
        let plan = run(None, &[ours("web"), ours("gone")]);
        assert_eq!(plan.changes.len(), 2);
        assert!(
            plan.changes
                .iter()
                .all(|c| matches!(c, Change::Delete { .. }))
        );
    }

    #[test]
    fn foreign_associations_are_never_written_and_are_reported() {
        let by_hand = assoc("web", "arn:aws:iam::111122223333:role/by-hand", None);
        let other_binding = assoc("api", ROLE, Some(("prod-eu", "team", "other")));
        let other_cluster = assoc("old", ROLE, Some(("staging", "team", "app")));
        let unwanted_foreign = assoc("x", ROLE, None);
        let plan = run(
            Some(&want(&["web", "api", "old"])),
            &[by_hand, other_binding, other_cluster, unwanted_foreign],
        );
        assert!(plan.changes.is_empty(), "{:?}", plan.changes);
        let holders: Vec<&str> = plan.foreign.iter().map(|f| f.holder.as_str()).collect();
        assert_eq!(
            holders,
            [
                "IAMRoleBinding team/other of this cluster",
                "hatrack of cluster \"staging\"",
                "not hatrack (no hatrack.dev/ tags)"
            ]
        );
        let message = foreign_message(&plan.foreign).unwrap();
        assert!(
            message.contains("a-web") && message.contains("role/by-hand"),
            "{message}"
        );
        assert!(foreign_message(&[]).is_none());
        // Cleanup leaves them too.
        let plan = run(None, &[assoc("web", ROLE, None)]);
        assert!(plan.changes.is_empty());
    }

    #[test]
    fn describes_wanted_recorded_and_unclaimed_service_accounts_only() {
        let listed: Vec<AssociationSummary> = ["web", "was-mine", "nobodys", "theirs"]
            .iter()
            .map(|sa| AssociationSummary {
                id: format!("a-{sa}"),
                arn: String::new(),
                namespace: "team".into(),
                service_account: sa.to_string(),
            })
            .collect();
        let wanted = BTreeSet::from(["web".to_string()]);
        let recorded = BTreeSet::from(["was-mine".to_string()]);
        let picked = |spec_changed| -> Vec<String> {
            to_describe(&listed, &wanted, &recorded, spec_changed, |sa| {
                sa == "theirs" || sa == "was-mine"
            })
            .iter()
            .map(|a| a.service_account.clone())
            .collect()
        };
        assert_eq!(picked(true), ["web", "was-mine", "nobodys"]);
        // A resync of an unchanged spec reads only its own.
        assert_eq!(picked(false), ["web", "was-mine"]);
    }
}
