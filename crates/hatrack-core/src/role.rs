//! The IAM role a binding asks for (built, pure), the role AWS has (read by the IAM edge), and
//! the smallest set of IAM calls that takes the second to the first (diffed, pure).

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use serde_json::Value;

use crate::crd::IAMRoleBinding;
use crate::crd::TrustMechanism;
use crate::naming;
use crate::policy::{self, DocumentKind};
use crate::settings::Settings;
use crate::trust::{self, TrustInputs};
use crate::validate;

/// Aggregate size quota of a role's inline policies (characters, whitespace not counted).
pub const INLINE_POLICIES_MAX_CHARS: usize = 10_240;
/// IAM allows 50 tags per role.
pub const MAX_TAGS: usize = 50;
/// hatrack's ownership tags on every role: cluster, cluster ARN, namespace, name.
pub const OWNERSHIP_TAGS: usize = 4;
/// Tags a binding may set (`spec.tags`; the CRD's `maxProperties` says the same): what IAM
/// allows less hatrack's own, so a binding the API server admits can always become a role.
pub const MAX_BINDING_TAGS: usize = MAX_TAGS - OWNERSHIP_TAGS;
/// Default maximum session duration.
pub const DEFAULT_MAX_SESSION_SECONDS: i32 = 3600;

/// A field of the binding that cannot become a valid role.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct SpecError {
    /// Path in the object, e.g. `spec.inlinePolicies.put-receipts.Statement[0].Effect`.
    pub field: String,
    pub message: String,
}

fn spec_err(field: impl Into<String>, message: impl Into<String>) -> SpecError {
    SpecError {
        field: field.into(),
        message: message.into(),
    }
}

/// An IAM role's definition: what a binding wants ([`DesiredRole::role`]) or what IAM has
/// ([`ActualRole`]); [`diff`] compares the two.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Role {
    pub role_name: String,
    pub path: String,
    pub arn: String,
    pub assume_role_policy: Value,
    pub inline_policies: BTreeMap<String, Value>,
    pub managed_policy_arns: BTreeSet<String>,
    pub permissions_boundary: Option<String>,
    pub max_session_duration: i32,
    pub description: String,
    pub tags: BTreeMap<String, String>,
}

/// The role as a binding wants it, with the binding it comes from. Serialises to the `plan`
/// output (the role's fields beside `namespace` and `name`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DesiredRole {
    pub namespace: String,
    pub name: String,
    #[serde(flatten)]
    pub role: Role,
    /// The trust mechanisms the role's trust policy admits (the binding's, or the defaults).
    #[serde(skip)]
    pub mechanisms: BTreeSet<TrustMechanism>,
}

impl DesiredRole {
    /// Whether pods reach the role through IRSA (the ServiceAccount annotation and the
    /// cluster's OIDC provider are needed).
    pub fn uses_irsa(&self) -> bool {
        self.mechanisms.contains(&TrustMechanism::Irsa)
    }
}

/// The role as IAM has it.
pub type ActualRole = Role;

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
    use super::*;
    use serde_json::json;

    pub(crate) fn binding(spec: Value) -> IAMRoleBinding {
        serde_json::from_value(json!({
            "apiVersion": "hatrack.dev/v1alpha1", "kind": "IAMRoleBinding",
            "metadata": {"name": "reader", "namespace": "payments"},
            "spec": spec
        }))
        .unwrap()
    }

    fn full() -> IAMRoleBinding {
        binding(json!({
            "serviceAccounts": ["api", "worker"],
            "trust": {"irsa": {"audience": "sts.amazonaws.com"}, "podIdentity": {}},
            "managedPolicyArns": ["arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess"],
            "inlinePolicies": {"put-receipts": {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": ["s3:PutObject"], "Resource": ["arn:aws:s3:::receipts/*"]}]}},
            "permissionsBoundary": "arn:aws:iam::111122223333:policy/boundary",
            "maxSessionDuration": 7200,
            "tags": {"team": "payments"}
        }))
    }

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
