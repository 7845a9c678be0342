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

    /// The trust policy for `service_accounts` of `namespace`.
    fn policy(
        s: &Settings,
        namespace: &str,
        service_accounts: &[String],
        irsa_audience: Option<&str>,
        pod_identity: bool,
    ) -> Result<Value, TrustError> {
        trust_policy(
            s,
            &TrustInputs {
                namespace,
                service_accounts,
                irsa_audience,
                pod_identity,
            },
        )
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

    /// EKS Pod Identity asking for ServiceAccount payments/api of cluster prod-eu.
    fn payments_api() -> Request {
        pod_identity(
            "111122223333",
            "prod-eu",
            "payments",
            "api",
            "sts:AssumeRole",
        )
    }

    #[test]
    fn irsa_admits_exactly_the_bound_service_accounts() {
        let s = Settings::example();
        let doc = policy(
            &s,
            "payments",
            &sas(&["api", "worker"]),
            Some("sts.amazonaws.com"),
            false,
        )
        .unwrap();
        let provider = s.oidc_provider_arn().unwrap();
        // another cluster's issuer (a different provider, and its own condition keys)
        let other = "oidc.eks.us-east-1.amazonaws.com/id/OTHER";
        let other_provider = format!("arn:aws:iam::111122223333:oidc-provider/{other}");
        let aud = "sts.amazonaws.com";
        for (issuer, provider, aud, sub, allowed) in [
            (ISSUER, &provider, aud, "payments:api", true),
            (ISSUER, &provider, aud, "payments:worker", true),
            // an unbound SA, another namespace, a prefix trick, another audience
            (ISSUER, &provider, aud, "payments:admin", false),
            (ISSUER, &provider, aud, "billing:api", false),
            (ISSUER, &provider, aud, "payments:api-x", false),
            (ISSUER, &provider, "other-audience", "payments:api", false),
            (other, &other_provider, aud, "payments:api", false),
            // the right token presented through the wrong principal
            (ISSUER, &other_provider, aud, "payments:api", false),
        ] {
            let sub = format!("system:serviceaccount:{sub}");
            let decision = evaluate(&doc, &web_identity(provider, issuer, aud, &sub)).unwrap();
            assert_eq!(
                decision == Decision::Allow,
                allowed,
                "{issuer} {provider} {aud} {sub}: {decision:?}"
            );
        }
        // pod identity is not enabled
        assert_eq!(
            evaluate(&doc, &payments_api()).unwrap(),
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
        let doc = policy(&s, "payments", &sas(&["api"]), None, true).unwrap();
        let from = |arn: &str| payments_api().with("aws:RequestTag/eks-cluster-arn", arn);
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
        assert_ne!(evaluate(&doc, &payments_api()).unwrap(), Decision::Allow);
    }

    #[test]
    fn pod_identity_is_pinned_to_cluster_namespace_and_service_accounts() {
        let s = Settings::example();
        let doc = policy(&s, "payments", &sas(&["api"]), None, true).unwrap();
        // account, cluster, namespace, ServiceAccount, action
        for (request, allowed) in [
            ("111122223333 prod-eu payments api sts:AssumeRole", true),
            ("111122223333 prod-eu payments api sts:TagSession", true),
            ("111122223333 staging payments api sts:AssumeRole", false),
            ("111122223333 prod-eu billing api sts:AssumeRole", false),
            ("111122223333 prod-eu payments worker sts:AssumeRole", false),
            ("999999999999 prod-eu payments api sts:AssumeRole", false),
            (
                "111122223333 prod-eu payments api sts:AssumeRoleWithWebIdentity",
                false,
            ),
        ] {
            let r: Vec<&str> = request.split(' ').collect();
            let decision = evaluate(&doc, &pod_identity(r[0], r[1], r[2], r[3], r[4])).unwrap();
            assert_eq!(
                decision == Decision::Allow,
                allowed,
                "{request}: {decision:?}"
            );
        }
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
        let doc = policy(
            &Settings::example(),
            "ns",
            &sas(&["api"]),
            Some("aud"),
            true,
        )
        .unwrap();
        assert_eq!(doc["Statement"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn irsa_without_issuer_is_an_error() {
        let mut s = Settings::example();
        s.oidc_issuer_host_path = None;
        let err = policy(&s, "ns", &sas(&["api"]), Some("a"), false).unwrap_err();
        assert_eq!(err, TrustError::NoIssuer);
    }

    #[test]
    fn too_many_service_accounts_is_an_error_never_a_wider_trust() {
        let s = Settings::example();
        let many: Vec<String> = (0..60).map(|i| format!("service-account-{i}")).collect();
        let aud = Some("sts.amazonaws.com");
        let err = policy(&s, "payments", &many, aud, false).unwrap_err();
        assert!(
            matches!(err, TrustError::TooLarge { limit: 2048, .. }),
            "{err:?}"
        );
        let mut raised = s.clone();
        raised.trust_policy_max_chars = 8192;
        assert!(policy(&raised, "payments", &many, aud, false).is_ok());
    }
}
