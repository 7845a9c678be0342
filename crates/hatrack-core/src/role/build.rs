//! Building the role a binding asks for: its name, trust, policies, boundary, session and
//! tags, each checked against IAM's limits, with every error and its field.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::{
    DEFAULT_MAX_SESSION_SECONDS, DesiredRole, INLINE_POLICIES_MAX_CHARS, MAX_BINDING_TAGS,
    MAX_TAGS, OWNERSHIP_TAGS, Role, SpecError,
};
use crate::crd::{IAMRoleBinding, TrustMechanism};
use crate::naming;
use crate::policy::{self, DocumentKind};
use crate::settings::Settings;
use crate::trust::{self, TrustInputs};
use crate::validate;

fn spec_err(field: impl Into<String>, message: impl Into<String>) -> SpecError {
    SpecError {
        field: field.into(),
        message: message.into(),
    }
}

/// Builds the desired role, or every reason the binding cannot be one.
pub fn desired_role(
    binding: &IAMRoleBinding,
    settings: &Settings,
) -> Result<DesiredRole, Vec<SpecError>> {
    let mut errors = Vec::new();
    let namespace = binding.metadata.namespace.clone().unwrap_or_default();
    let name = binding.metadata.name.clone().unwrap_or_default();
    if namespace.is_empty() {
        errors.push(spec_err(
            "metadata.namespace",
            "an IAMRoleBinding is namespaced; set metadata.namespace",
        ));
    }
    if name.is_empty() {
        errors.push(spec_err("metadata.name", "is required"));
    }
    let spec = &binding.spec;

    // ServiceAccounts: names only (a name cannot reach into another namespace).
    if spec.service_accounts.is_empty() {
        errors.push(spec_err(
            "spec.serviceAccounts",
            "bind at least one ServiceAccount",
        ));
    }
    let mut seen = BTreeSet::new();
    for (i, sa) in spec.service_accounts.iter().enumerate() {
        if !is_dns_subdomain(sa) {
            errors.push(spec_err(
                format!("spec.serviceAccounts[{i}]"),
                format!("{sa:?} is not a ServiceAccount name of this namespace (lower-case DNS subdomain; no namespace prefix)"),
            ));
        }
        if !seen.insert(sa) {
            errors.push(spec_err(
                format!("spec.serviceAccounts[{i}]"),
                format!("{sa:?} is listed twice"),
            ));
        }
    }

    // Trust.
    let kinds: BTreeSet<TrustMechanism> = match &spec.trust {
        Some(t) => {
            let mut k = BTreeSet::new();
            if t.irsa.is_some() {
                k.insert(TrustMechanism::Irsa);
            }
            if t.pod_identity.is_some() {
                k.insert(TrustMechanism::PodIdentity);
            }
            if k.is_empty() {
                errors.push(spec_err("spec.trust", "enable irsa, podIdentity or both"));
            }
            k
        }
        None => settings.default_trust.iter().copied().collect(),
    };
    let audience = spec
        .trust
        .as_ref()
        .and_then(|t| t.irsa.as_ref())
        .and_then(|i| i.audience.clone())
        .unwrap_or_else(|| settings.default_audience.clone());
    if audience.is_empty() || audience.contains(char::is_whitespace) {
        errors.push(spec_err(
            "spec.trust.irsa.audience",
            format!("must be a non-empty token without spaces, got {audience:?}"),
        ));
    }
    let assume_role_policy = if errors.is_empty() {
        match trust::trust_policy(
            settings,
            &TrustInputs {
                namespace: &namespace,
                service_accounts: &spec.service_accounts,
                irsa_audience: kinds
                    .contains(&TrustMechanism::Irsa)
                    .then_some(audience.as_str()),
                pod_identity: kinds.contains(&TrustMechanism::PodIdentity),
            },
        ) {
            Ok(doc) => doc,
            Err(e) => {
                errors.push(spec_err("spec.trust", e.to_string()));
                Value::Null
            }
        }
    } else {
        Value::Null
    };

    // Inline policies.
    let mut inline_size = 0;
    for (pname, doc) in &spec.inline_policies {
        let field = format!("spec.inlinePolicies.{pname}");
        if let Err(m) = validate::inline_policy_name(pname) {
            errors.push(spec_err(&field, m));
        }
        if let Err(errs) = policy::parse(doc, DocumentKind::Identity) {
            for e in errs {
                let f = if e.path.is_empty() {
                    field.clone()
                } else {
                    format!("{field}.{}", e.path)
                };
                errors.push(spec_err(f, e.message));
            }
        }
        inline_size += validate::policy_size(&doc.to_string());
    }
    if inline_size > INLINE_POLICIES_MAX_CHARS {
        errors.push(spec_err(
            "spec.inlinePolicies",
            format!("inline policies total {inline_size} characters (whitespace not counted), over IAM's limit of {INLINE_POLICIES_MAX_CHARS} per role; move statements into a managed policy"),
        ));
    }

    // Managed policies.
    let mut managed = BTreeSet::new();
    for (i, arn) in spec.managed_policy_arns.iter().enumerate() {
        if let Err(m) = validate::policy_arn(arn) {
            errors.push(spec_err(format!("spec.managedPolicyArns[{i}]"), m));
        }
        managed.insert(arn.clone());
    }
    if managed.len() > settings.max_managed_policies {
        errors.push(spec_err(
            "spec.managedPolicyArns",
            format!(
                "{} managed policies, over the quota of {} per role (--max-managed-policies)",
                managed.len(),
                settings.max_managed_policies
            ),
        ));
    }
    if let Some(boundary) = &spec.permissions_boundary
        && let Err(m) = validate::policy_arn(boundary)
    {
        errors.push(spec_err("spec.permissionsBoundary", m));
    }

    let max_session_duration = spec
        .max_session_duration
        .unwrap_or(DEFAULT_MAX_SESSION_SECONDS);
    if let Err(m) = validate::max_session_duration(max_session_duration) {
        errors.push(spec_err("spec.maxSessionDuration", m));
    }

    let description = spec.description.clone().unwrap_or_else(|| {
        format!(
            "Managed by hatrack for IAMRoleBinding {namespace}/{name} in cluster {}",
            settings.cluster_name
        )
    });
    if let Err(m) = validate::description(&description) {
        errors.push(spec_err("spec.description", m));
    }

    // Tags: the user's, then ownership (which the user may not set).
    if spec.tags.len() > MAX_BINDING_TAGS {
        errors.push(spec_err(
            "spec.tags",
            format!(
                "{} tags, over the {MAX_BINDING_TAGS} a binding may set (IAM allows {MAX_TAGS} per role; hatrack adds its {OWNERSHIP_TAGS} ownership tags)",
                spec.tags.len()
            ),
        ));
    }
    let mut tags = BTreeMap::new();
    for (k, v) in &spec.tags {
        let field = format!("spec.tags.{k}");
        // IAM compares tag keys case-insensitively: `HATRACK.DEV/cluster` is hatrack's tag.
        if k.to_ascii_lowercase().starts_with(naming::TAG_PREFIX) {
            errors.push(spec_err(
                &field,
                format!(
                    "tag keys under {} are reserved for hatrack's ownership tags",
                    naming::TAG_PREFIX
                ),
            ));
            continue;
        }
        if let Err(m) = validate::tag_key(k) {
            errors.push(spec_err(&field, m));
        }
        if let Err(m) = validate::tag_value(k, v) {
            errors.push(spec_err(&field, m));
        }
        if let Some(other) = tags.keys().find(|o: &&String| o.eq_ignore_ascii_case(k)) {
            errors.push(spec_err(
                &field,
                format!("tag key {k:?} differs from {other:?} only in case, and IAM compares tag keys case-insensitively"),
            ));
            continue;
        }
        tags.insert(k.clone(), v.clone());
    }
    let mut own = naming::ownership_tags(&settings.cluster_name, &namespace, &name);
    if let Some(arn) = settings.cluster_arn() {
        own.insert(naming::TAG_CLUSTER_ARN.to_string(), arn);
    }
    let own_count = own.len();
    tags.extend(own);
    if tags.len() > MAX_TAGS {
        errors.push(spec_err(
            "spec.tags",
            format!(
                "{} tags with hatrack's {own_count} ownership tags, over IAM's limit of {MAX_TAGS}",
                tags.len()
            ),
        ));
    }

    if !errors.is_empty() {
        return Err(errors);
    }
    let role_name = settings.role_name_in_use(
        binding.status.as_ref().and_then(|s| s.role_name.as_deref()),
        &namespace,
        &name,
    );
    Ok(DesiredRole {
        namespace,
        name,
        mechanisms: kinds,
        role: Role {
            arn: settings.role_arn(&role_name),
            role_name,
            path: settings.role_path.clone(),
            assume_role_policy,
            inline_policies: spec.inline_policies.clone(),
            managed_policy_arns: managed,
            permissions_boundary: spec.permissions_boundary.clone(),
            max_session_duration,
            description,
            tags,
        },
    })
}

fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.ends_with(|c: char| c.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::testing::*;
    use super::*;

    #[test]
    fn reserved_and_case_duplicate_tag_keys_are_refused_in_any_case() {
        for (tags, expected) in [
            (
                json!({"HATRACK.DEV/cluster": "other"}),
                "reserved for hatrack",
            ),
            (
                json!({"Hatrack.Dev/namespace": "x"}),
                "reserved for hatrack",
            ),
            (json!({"AWS:cloudformation": "x"}), "aws:"),
            (json!({"Team": "a", "team": "b"}), "only in case"),
        ] {
            let b = binding(json!({"serviceAccounts": ["api"], "tags": tags}));
            let errors = desired_role(&b, &Settings::example())
                .err()
                .unwrap_or_else(|| panic!("{tags} accepted"));
            let text = format!("{errors:?}");
            assert!(text.contains(expected), "{tags}: {text}");
        }
    }

    #[test]
    fn a_binding_may_set_46_tags_whatever_the_cluster_identity() {
        let with_tags = |n: usize| {
            let tags: serde_json::Map<String, serde_json::Value> =
                (0..n).map(|i| (format!("t{i}"), json!("v"))).collect();
            binding(json!({"serviceAccounts": ["api"], "tags": tags}))
        };
        let mut by_arn = Settings::example();
        by_arn.cluster_region = Some("eu-west-1".into());
        for settings in [&by_arn, &Settings::example()] {
            let d = desired_role(&with_tags(MAX_BINDING_TAGS), settings).unwrap();
            assert!(d.role.tags.len() <= MAX_TAGS);
            let errors = desired_role(&with_tags(MAX_BINDING_TAGS + 1), settings).unwrap_err();
            assert!(
                errors
                    .iter()
                    .any(|e| e.field == "spec.tags" && e.message.contains("over the 46")),
                "{errors:?}"
            );
        }
        // The count of ownership tags is what the ARN identity adds: the limit is exact.
        let d = desired_role(&with_tags(MAX_BINDING_TAGS), &by_arn).unwrap();
        assert_eq!(d.role.tags.len(), MAX_TAGS);
        assert_eq!(MAX_BINDING_TAGS, 46);
    }

    #[test]
    fn builds_the_full_role() {
        let d = desired_role(&full(), &Settings::example()).unwrap();
        assert!(d.role.role_name.starts_with("payments-reader-"));
        assert_eq!(d.role.path, "/hatrack/");
        assert_eq!(
            d.role.arn,
            format!(
                "arn:aws:iam::111122223333:role/hatrack/{}",
                d.role.role_name
            )
        );
        assert_eq!(d.role.max_session_duration, 7200);
        assert_eq!(d.role.tags["team"], "payments");
        assert_eq!(d.role.tags[naming::TAG_NAMESPACE], "payments");
        assert_eq!(d.role.tags[naming::TAG_CLUSTER], "prod-eu");
        assert_eq!(
            d.role.assume_role_policy["Statement"]
                .as_array()
                .unwrap()
                .len(),
            2
        );
    }

    #[test]
    fn defaults_to_the_controller_trust_and_session() {
        let d = desired_role(
            &binding(json!({"serviceAccounts": ["api"]})),
            &Settings::example(),
        )
        .unwrap();
        assert_eq!(d.role.max_session_duration, 3600);
        let st = d.role.assume_role_policy["Statement"].as_array().unwrap();
        assert_eq!(st.len(), 1);
        assert_eq!(st[0]["Action"], "sts:AssumeRoleWithWebIdentity");
        assert!(d.role.description.contains("payments/reader"));
    }

    #[test]
    fn collects_every_spec_error_with_its_field() {
        let b = binding(json!({
            "serviceAccounts": ["api", "other-ns:api", "api"],
            "managedPolicyArns": ["ReadOnlyAccess"],
            "inlinePolicies": {"bad": {"Statement": [{"Effect": "Perhaps", "Action": "s3:*", "Resource": "*"}]}},
            "maxSessionDuration": 60,
            "tags": {"hatrack.dev/name": "x", "aws:x": "y"}
        }));
        let errs: Vec<String> = desired_role(&b, &Settings::example())
            .unwrap_err()
            .iter()
            .map(|e| e.to_string())
            .collect();
        let text = errs.join("\n");
        for expected in [
            "spec.serviceAccounts[1]:",
            "spec.serviceAccounts[2]: \"api\" is listed twice",
            "spec.managedPolicyArns[0]:",
            "spec.inlinePolicies.bad.Statement[0].Effect: Effect must be Allow or Deny, got \"Perhaps\"",
            "spec.maxSessionDuration:",
            "spec.tags.hatrack.dev/name:",
            "spec.tags.aws:x:",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
        }
    }

    #[test]
    fn inline_policy_aggregate_size_is_limited() {
        let statements: Vec<Value> = (0..120).map(|i| json!({"Effect":"Allow","Action":"s3:GetObject","Resource": format!("arn:aws:s3:::bucket-number-{i}/*")})).collect();
        let b = binding(
            json!({"serviceAccounts": ["api"], "inlinePolicies": {"big": {"Version":"2012-10-17","Statement": statements}}}),
        );
        let errs = desired_role(&b, &Settings::example()).unwrap_err();
        assert!(
            errs.iter()
                .any(|e| e.field == "spec.inlinePolicies" && e.message.contains("10240")),
            "{errs:?}"
        );
    }

    #[test]
    fn managed_policy_quota_is_enforced() {
        let arns: Vec<String> = (0..11)
            .map(|i| format!("arn:aws:iam::111122223333:policy/p{i}"))
            .collect();
        let b = binding(json!({"serviceAccounts": ["api"], "managedPolicyArns": arns}));
        let errs = desired_role(&b, &Settings::example()).unwrap_err();
        assert!(
            errs.iter().any(|e| e.field == "spec.managedPolicyArns"),
            "{errs:?}"
        );
    }
}
