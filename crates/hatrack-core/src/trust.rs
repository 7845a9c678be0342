//! Trust policies: who may put on the hat. Built so that exactly the bound ServiceAccounts of
//! the binding's namespace, in this cluster, can assume the role, and nothing wider.

use serde_json::{Value, json};

use crate::settings::Settings;

/// Service principal of EKS Pod Identity.
pub const POD_IDENTITY_PRINCIPAL: &str = "pods.eks.amazonaws.com";

/// What a trust policy is built from, resolved from the binding and the controller defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustInputs<'a> {
    pub namespace: &'a str,
    pub service_accounts: &'a [String],
    /// `Some(audience)` when IRSA is enabled.
    pub irsa_audience: Option<&'a str>,
    pub pod_identity: bool,
}

/// Why a trust policy cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrustError {
    #[error("IRSA trust needs the cluster's OIDC issuer: start hatrack with --oidc-issuer")]
    NoIssuer,
    #[error(
        "the trust policy would be {size} characters, over the account's quota of {limit} (whitespace not counted); bind fewer ServiceAccounts per role, or raise the quota in AWS and --trust-policy-max-chars"
    )]
    TooLarge { size: usize, limit: usize },
}

/// Builds the trust policy document.
pub fn trust_policy(settings: &Settings, inputs: &TrustInputs<'_>) -> Result<Value, TrustError> {
    let mut statements = Vec::new();
    let subjects: Vec<String> = inputs
        .service_accounts
        .iter()
        .map(|sa| format!("system:serviceaccount:{}:{sa}", inputs.namespace))
        .collect();
    if let Some(audience) = inputs.irsa_audience {
        let issuer = settings
            .oidc_issuer_host_path
            .as_deref()
            .ok_or(TrustError::NoIssuer)?;
        let provider = settings.oidc_provider_arn().ok_or(TrustError::NoIssuer)?;
        statements.push(json!({
            "Sid": "IRSA",
            "Effect": "Allow",
            "Principal": {"Federated": provider},
            "Action": "sts:AssumeRoleWithWebIdentity",
            "Condition": {"StringEquals": {
                format!("{issuer}:aud"): audience,
                format!("{issuer}:sub"): one_or_many(subjects),
            }}
        }));
    }
    if inputs.pod_identity {
        let mut conditions = json!({
            "aws:SourceAccount": settings.account_id,
            "aws:RequestTag/eks-cluster-name": settings.cluster_name,
            "aws:RequestTag/kubernetes-namespace": inputs.namespace,
            "aws:RequestTag/kubernetes-service-account": one_or_many(inputs.service_accounts.to_vec()),
        });
        // Pinned to the cluster's ARN when known: a same-named cluster in another region or
        // account sends another `eks-cluster-arn` session tag. (Not `aws:SourceArn`: EKS
        // documents it for the cluster role, not for Pod Identity's AssumeRole, and a
        // condition on a key the request lacks would lock every pod out.)
        if let Some(arn) = settings.cluster_arn() {
            conditions["aws:RequestTag/eks-cluster-arn"] = json!(arn);
        }
        statements.push(json!({
            "Sid": "EKSPodIdentity",
            "Effect": "Allow",
            "Principal": {"Service": POD_IDENTITY_PRINCIPAL},
            "Action": ["sts:AssumeRole", "sts:TagSession"],
            "Condition": {"StringEquals": conditions}
        }));
    }
    let doc = json!({"Version": "2012-10-17", "Statement": statements});
    let size = crate::validate::policy_size(&doc.to_string());
    if size > settings.trust_policy_max_chars {
        return Err(TrustError::TooLarge {
            size,
            limit: settings.trust_policy_max_chars,
        });
    }
    Ok(doc)
}

fn one_or_many(mut items: Vec<String>) -> Value {
    items.sort();
    items.dedup();
    if items.len() == 1 {
        Value::String(items.remove(0))
    } else {
        json!(items)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use iam_eval::{Decision, Principal, Request, evaluate};

    const ISSUER: &str = "oidc.eks.eu-west-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE";

    fn sas(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    fn web_identity(provider: &str, issuer: &str, aud: &str, sub: &str) -> Request {
        Request {
            principal: Some(Principal::Federated(provider.into())),
            action: "sts:AssumeRoleWithWebIdentity".into(),
            ..Request::default()
        }
        .with(&format!("{issuer}:aud"), aud)
        .with(&format!("{issuer}:sub"), sub)
    }

    fn pod_identity(account: &str, cluster: &str, ns: &str, sa: &str, action: &str) -> Request {
        Request {
            principal: Some(Principal::Service(POD_IDENTITY_PRINCIPAL.into())),
            action: action.into(),
            ..Request::default()
        }
        .with("aws:SourceAccount", account)
        .with("aws:RequestTag/eks-cluster-name", cluster)
        .with("aws:RequestTag/kubernetes-namespace", ns)
        .with("aws:RequestTag/kubernetes-service-account", sa)
    }

    #[test]
    fn irsa_admits_exactly_the_bound_service_accounts() {
        let s = Settings::example();
        let bound = sas(&["api", "worker"]);
        let doc = trust_policy(
            &s,
            &TrustInputs {
                namespace: "payments",
                service_accounts: &bound,
                irsa_audience: Some("sts.amazonaws.com"),
                pod_identity: false,
            },
        )
        .unwrap();
        let provider = s.oidc_provider_arn().unwrap();
        let may = |issuer: &str, provider: &str, aud: &str, sub: &str| {
            evaluate(&doc, &web_identity(provider, issuer, aud, sub)).unwrap() == Decision::Allow
        };
        assert!(may(
            ISSUER,
            &provider,
            "sts.amazonaws.com",
            "system:serviceaccount:payments:api"
        ));
        assert!(may(
            ISSUER,
            &provider,
            "sts.amazonaws.com",
            "system:serviceaccount:payments:worker"
        ));
        // an unbound SA, another namespace, a prefix trick, another audience
        assert!(!may(
            ISSUER,
            &provider,
            "sts.amazonaws.com",
            "system:serviceaccount:payments:admin"
        ));
        assert!(!may(
            ISSUER,
            &provider,
            "sts.amazonaws.com",
            "system:serviceaccount:billing:api"
        ));
        assert!(!may(
            ISSUER,
            &provider,
            "sts.amazonaws.com",
            "system:serviceaccount:payments:api-x"
        ));
        assert!(!may(
            ISSUER,
            &provider,
            "other-audience",
            "system:serviceaccount:payments:api"
        ));
        // another cluster's issuer (a different provider, and its own condition keys)
        let other = "oidc.eks.us-east-1.amazonaws.com/id/OTHER";
        let other_provider = format!("arn:aws:iam::111122223333:oidc-provider/{other}");
        assert!(!may(
            other,
            &other_provider,
            "sts.amazonaws.com",
            "system:serviceaccount:payments:api"
        ));
        // the right token presented through the wrong principal
        assert!(!may(
            ISSUER,
            &other_provider,
            "sts.amazonaws.com",
            "system:serviceaccount:payments:api"
        ));
        // pod identity is not enabled
        assert_eq!(
            evaluate(
                &doc,
                &pod_identity(
                    "111122223333",
                    "prod-eu",
                    "payments",
                    "api",
                    "sts:AssumeRole"
                )
            )
            .unwrap(),
            Decision::ImplicitDeny
        );
        assert!(
            !doc.to_string().contains('*'),
            "no wildcard in a trust policy: {doc}"
        );
    }

    #[test]
    fn pod_identity_is_pinned_to_the_clusters_arn_when_its_region_is_known() {
        let mut s = Settings::example();
        s.cluster_region = Some("eu-west-1".into());
        let bound = sas(&["api"]);
        let doc = trust_policy(
            &s,
            &TrustInputs {
                namespace: "payments",
                service_accounts: &bound,
                irsa_audience: None,
                pod_identity: true,
            },
        )
        .unwrap();
        let from = |arn: &str| {
            pod_identity(
                "111122223333",
                "prod-eu",
                "payments",
                "api",
                "sts:AssumeRole",
            )
            .with("aws:RequestTag/eks-cluster-arn", arn)
        };
        let ours = "arn:aws:eks:eu-west-1:111122223333:cluster/prod-eu";
        assert_eq!(evaluate(&doc, &from(ours)).unwrap(), Decision::Allow);
        // the same name in another region, or in another account
        for other in [
            "arn:aws:eks:us-east-1:111122223333:cluster/prod-eu",
            "arn:aws:eks:eu-west-1:444455556666:cluster/prod-eu",
        ] {
            assert_ne!(
                evaluate(&doc, &from(other)).unwrap(),
                Decision::Allow,
                "{other}"
            );
        }
        // without the session tag (disableSessionTags): refused
        assert_ne!(
            evaluate(
                &doc,
                &pod_identity(
                    "111122223333",
                    "prod-eu",
                    "payments",
                    "api",
                    "sts:AssumeRole"
                )
            )
            .unwrap(),
            Decision::Allow
        );
    }

    #[test]
    fn pod_identity_is_pinned_to_cluster_namespace_and_service_accounts() {
        let s = Settings::example();
        let bound = sas(&["api"]);
        let doc = trust_policy(
            &s,
            &TrustInputs {
                namespace: "payments",
                service_accounts: &bound,
                irsa_audience: None,
                pod_identity: true,
            },
        )
        .unwrap();
        let may = |account: &str, cluster: &str, ns: &str, sa: &str, action: &str| {
            evaluate(&doc, &pod_identity(account, cluster, ns, sa, action)).unwrap()
                == Decision::Allow
        };
        assert!(may(
            "111122223333",
            "prod-eu",
            "payments",
            "api",
            "sts:AssumeRole"
        ));
        assert!(may(
            "111122223333",
            "prod-eu",
            "payments",
            "api",
            "sts:TagSession"
        ));
        assert!(!may(
            "111122223333",
            "staging",
            "payments",
            "api",
            "sts:AssumeRole"
        ));
        assert!(!may(
            "111122223333",
            "prod-eu",
            "billing",
            "api",
            "sts:AssumeRole"
        ));
        assert!(!may(
            "111122223333",
            "prod-eu",
            "payments",
            "worker",
            "sts:AssumeRole"
        ));
        assert!(!may(
            "999999999999",
            "prod-eu",
            "payments",
            "api",
            "sts:AssumeRole"
        ));
        assert!(!may(
            "111122223333",
            "prod-eu",
            "payments",
            "api",
            "sts:AssumeRoleWithWebIdentity"
        ));
        // a request without the cluster tag is refused
        let untagged = Request {
            principal: Some(Principal::Service(POD_IDENTITY_PRINCIPAL.into())),
            action: "sts:AssumeRole".into(),
            ..Request::default()
        }
        .with("aws:SourceAccount", "111122223333")
        .with("aws:RequestTag/kubernetes-namespace", "payments")
        .with("aws:RequestTag/kubernetes-service-account", "api");
        assert_eq!(evaluate(&doc, &untagged).unwrap(), Decision::ImplicitDeny);
    }

    #[test]
    fn both_mechanisms_together() {
        let s = Settings::example();
        let bound = sas(&["api"]);
        let doc = trust_policy(
            &s,
            &TrustInputs {
                namespace: "ns",
                service_accounts: &bound,
                irsa_audience: Some("aud"),
                pod_identity: true,
            },
        )
        .unwrap();
        assert_eq!(doc["Statement"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn irsa_without_issuer_is_an_error() {
        let mut s = Settings::example();
        s.oidc_issuer_host_path = None;
        let bound = sas(&["api"]);
        let err = trust_policy(
            &s,
            &TrustInputs {
                namespace: "ns",
                service_accounts: &bound,
                irsa_audience: Some("a"),
                pod_identity: false,
            },
        )
        .unwrap_err();
        assert_eq!(err, TrustError::NoIssuer);
    }

    #[test]
    fn too_many_service_accounts_is_an_error_never_a_wider_trust() {
        let s = Settings::example();
        let many: Vec<String> = (0..60).map(|i| format!("service-account-{i}")).collect();
        let err = trust_policy(
            &s,
            &TrustInputs {
                namespace: "payments",
                service_accounts: &many,
                irsa_audience: Some("sts.amazonaws.com"),
                pod_identity: false,
            },
        )
        .unwrap_err();
        assert!(
            matches!(err, TrustError::TooLarge { limit: 2048, .. }),
            "{err:?}"
        );
        let mut raised = s.clone();
        raised.trust_policy_max_chars = 8192;
        assert!(
            trust_policy(
                &raised,
                &TrustInputs {
                    namespace: "payments",
                    service_accounts: &many,
                    irsa_audience: Some("sts.amazonaws.com"),
                    pod_identity: false
                }
            )
            .is_ok()
        );
    }
}
