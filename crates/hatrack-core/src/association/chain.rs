//! EKS Pod Identity for a role in another account (role chaining through an association's
//! `targetRoleArn`): EKS assumes a *chaining role* in the cluster's account (trusted by
//! `pods.eks.amazonaws.com`, as any Pod Identity role), then with it the binding's role in the
//! other account (the *target role*), passing the association's `externalId`, which EKS makes.
//! hatrack makes both roles, with the same name and the binding's ownership tags; the chaining
//! role may do nothing but assume the target role; the target role trusts the chaining role
//! only with the external ids of the binding's own associations.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

use crate::role::DesiredRole;
use crate::settings::Settings;

/// Sid of the target role's statement trusting the chaining role.
pub const CHAIN_SID: &str = "EKSPodIdentityChain";
/// Name of the chaining role's only inline policy.
pub const CHAIN_POLICY: &str = "hatrack-pod-identity-chain";

/// The chaining role in the cluster's account (`home`) for `target`, the binding's role in
/// another account: same name and path, trusted by EKS Pod Identity for the binding's
/// namespace and ServiceAccounts (`pod_identity_trust`, built with `home`'s settings), and
/// allowed only `sts:AssumeRole` and `sts:TagSession` on the target role.
pub fn chaining_role(
    target: &DesiredRole,
    home: &Settings,
    pod_identity_trust: Value,
) -> DesiredRole {
    let mut role = target.role.clone();
    role.arn = home.role_arn(&role.role_name);
    role.assume_role_policy = pod_identity_trust;
    role.inline_policies = BTreeMap::from([(
        CHAIN_POLICY.to_string(),
        json!({"Version": "2012-10-17", "Statement": [{
            "Sid": "AssumeTargetRole",
            "Effect": "Allow",
            "Action": ["sts:AssumeRole", "sts:TagSession"],
            "Resource": target.role.arn,
        }]}),
    )]);
    role.managed_policy_arns = BTreeSet::new();
    // A boundary names a policy of the target's account; this role's only grant is the
    // chain itself.
    role.permissions_boundary = None;
    role.description = truncate(&format!(
        "hatrack: EKS Pod Identity chaining role of {}/{}, assumes {}",
        target.namespace, target.name, target.role.arn
    ));
    DesiredRole {
        namespace: target.namespace.clone(),
        name: target.name.clone(),
        role,
        // Pods reach it through EKS Pod Identity only (no ServiceAccount annotation).
        mechanisms: BTreeSet::from([crate::crd::TrustMechanism::PodIdentity]),
    }
}

fn truncate(s: &str) -> String {
    // IAM's limit on a role description.
    s.chars().take(1000).collect()
}

/// The external ids the target role must trust, as EKS has them now: those of the
/// binding's own associations (ownership tags of `cluster`/`namespace`/`name`) that chain
/// from `chaining_arn` to `target_arn`. Read from EKS, never from the binding's status: a
/// status that lags the associations would make the role step drop a live id (and pods
/// lose credentials) until the association step puts it back.
pub fn live_external_ids<'a>(
    actual: impl IntoIterator<Item = &'a super::ActualAssociation>,
    chaining_arn: &str,
    target_arn: &str,
    (cluster, namespace, name): (&str, &str, &str),
) -> BTreeSet<String> {
    actual
        .into_iter()
        .filter(|a| {
            a.role_arn == chaining_arn
                && a.target_role_arn.as_deref() == Some(target_arn)
                && crate::naming::is_owned_by(&a.tags, cluster, namespace, name)
        })
        .filter_map(|a| a.external_id.clone())
        .collect()
}

/// The target role's trust: `trust` (as built for the binding) with its EKS Pod Identity
/// statement replaced by one trusting the chaining role with exactly `external_ids` (the
/// binding's associations'). Before any association exists there is no external id to
/// name: then the chaining role is explicitly denied (a trust policy needs a statement).
pub fn target_trust(trust: &Value, chaining_arn: &str, external_ids: &BTreeSet<String>) -> Value {
    let mut statements: Vec<Value> = trust["Statement"]
        .as_array()
        .map(|s| {
            s.iter()
                .filter(|st| st["Sid"] != "EKSPodIdentity")
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    if !external_ids.is_empty() {
        let ids: Vec<&String> = external_ids.iter().collect();
        let ids = if ids.len() == 1 {
            json!(ids[0])
        } else {
            json!(ids)
        };
        statements.push(json!({
            "Sid": CHAIN_SID,
            "Effect": "Allow",
            "Principal": {"AWS": chaining_arn},
            "Action": ["sts:AssumeRole", "sts:TagSession"],
            "Condition": {"StringEquals": {"sts:ExternalId": ids}}
        }));
    } else if statements.is_empty() {
        statements.push(json!({
            "Sid": format!("{CHAIN_SID}Pending"),
            "Effect": "Deny",
            "Principal": {"AWS": chaining_arn},
            "Action": "sts:AssumeRole"
        }));
    }
    json!({"Version": "2012-10-17", "Statement": statements})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::Settings;
    use iam_eval::{Decision, Principal, Request, evaluate};
    use serde_json::json;
    use std::collections::BTreeSet;

    const CHAINING: &str = "arn:aws:iam::111122223333:role/hatrack/shop-web-0123456789ab";

    fn target() -> crate::role::DesiredRole {
        let b: crate::crd::IAMRoleBinding = serde_json::from_value(json!({
            "apiVersion": "hatrack.dev/v1alpha1", "kind": "IAMRoleBinding",
            "metadata": {"name": "web", "namespace": "shop"},
            "spec": {"serviceAccounts": ["api"], "trust": {"irsa": {}, "podIdentity": {}},
                     "managedPolicyArns": ["arn:aws:iam::aws:policy/ReadOnlyAccess"]}
        }))
        .unwrap();
        let mut b_settings = Settings::example();
        b_settings.account_id = "222222222222".into();
        crate::role::desired_role(&b, &b_settings).unwrap()
    }

    fn assume(external_id: Option<&str>) -> Request {
        let r = Request {
            principal: Some(Principal::Aws(CHAINING.into())),
            action: "sts:AssumeRole".into(),
            ..Request::default()
        };
        match external_id {
            Some(id) => r.with("sts:ExternalId", id),
            None => r,
        }
    }

    #[test]
    fn the_target_trusts_the_chaining_role_only_with_the_associations_external_ids() {
        let t = target();
        let ids = BTreeSet::from(["e-1".to_string(), "e-2".to_string()]);
        let trust = target_trust(&t.role.assume_role_policy, CHAINING, &ids);
        let statements = trust["Statement"].as_array().unwrap();
        // The IRSA statement stays; the Pod Identity one is replaced by the chain.
        assert!(statements.iter().any(|s| s["Sid"] == "IRSA"));
        assert!(!statements.iter().any(|s| s["Sid"] == "EKSPodIdentity"));
        assert_eq!(
            evaluate(&trust, &assume(Some("e-2"))).unwrap(),
            Decision::Allow
        );
        assert_ne!(
            evaluate(&trust, &assume(Some("e-3"))).unwrap(),
            Decision::Allow
        );
        assert_ne!(evaluate(&trust, &assume(None)).unwrap(), Decision::Allow);
    }

    #[test]
    fn only_the_bindings_own_associations_to_the_target_are_trusted() {
        let owner = ("prod", "shop", "web");
        let target_arn = "arn:aws:iam::222222222222:role/hatrack/shop-web-0123456789ab";
        let ours = crate::naming::ownership_tags("prod", "shop", "web");
        let theirs = crate::naming::ownership_tags("prod", "shop", "other");
        let a = |id: &str,
                 role: &str,
                 target: Option<&str>,
                 tags: &std::collections::BTreeMap<String, String>| {
            super::super::ActualAssociation {
                id: id.into(),
                role_arn: role.into(),
                target_role_arn: target.map(str::to_string),
                external_id: Some(format!("x-{id}")),
                tags: tags.clone(),
                ..Default::default()
            }
        };
        let actual = [
            a("1", CHAINING, Some(target_arn), &ours),
            a("2", CHAINING, Some(target_arn), &ours),
            // Another binding's association naming our roles gets no access through us.
            a("3", CHAINING, Some(target_arn), &theirs),
            // Ours, but chaining elsewhere (an update in flight): not this target's.
            a(
                "4",
                CHAINING,
                Some("arn:aws:iam::222222222222:role/other"),
                &ours,
            ),
            a(
                "5",
                "arn:aws:iam::111122223333:role/other",
                Some(target_arn),
                &ours,
            ),
            // Ours and direct (no target): no external id to trust.
            super::super::ActualAssociation {
                external_id: None,
                ..a("6", CHAINING, None, &ours)
            },
        ];
        assert_eq!(
            live_external_ids(&actual, CHAINING, target_arn, owner),
            BTreeSet::from(["x-1".to_string(), "x-2".to_string()])
        );
        assert!(live_external_ids(&[], CHAINING, target_arn, owner).is_empty());
    }

    #[test]
    fn before_any_association_the_chaining_role_is_denied() {
        let mut t = target();
        t.role.assume_role_policy = json!({"Version": "2012-10-17", "Statement": [
            t.role.assume_role_policy["Statement"].as_array().unwrap().iter()
                .find(|s| s["Sid"] == "EKSPodIdentity").unwrap().clone()
        ]});
        let trust = target_trust(&t.role.assume_role_policy, CHAINING, &BTreeSet::new());
        assert_eq!(trust["Statement"].as_array().unwrap().len(), 1);
        assert_eq!(
            evaluate(&trust, &assume(Some("anything"))).unwrap(),
            Decision::ExplicitDeny
        );
    }

    #[test]
    fn the_chaining_role_may_only_assume_the_target() {
        let t = target();
        let home = Settings::example();
        let c = chaining_role(&t, &home, json!({"Version": "2012-10-17", "Statement": []}));
        assert_eq!(c.role.role_name, t.role.role_name);
        assert!(
            c.role.arn.starts_with("arn:aws:iam::111122223333:role/"),
            "{}",
            c.role.arn
        );
        assert!(c.role.managed_policy_arns.is_empty());
        assert_eq!(c.role.permissions_boundary, None);
        assert_eq!(c.role.tags, t.role.tags, "the binding's ownership tags");
        let policy = &c.role.inline_policies[CHAIN_POLICY];
        let on = |action: &str, resource: &str| {
            evaluate(
                policy,
                &Request {
                    action: action.into(),
                    resource: Some(resource.into()),
                    ..Request::default()
                },
            )
            .unwrap()
        };
        assert_eq!(on("sts:AssumeRole", &t.role.arn), Decision::Allow);
        assert_eq!(on("sts:TagSession", &t.role.arn), Decision::Allow);
        assert_ne!(
            on("sts:AssumeRole", "arn:aws:iam::222222222222:role/other"),
            Decision::Allow
        );
        assert_ne!(on("s3:GetObject", "*"), Decision::Allow);
    }
}
