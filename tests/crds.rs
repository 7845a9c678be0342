//! The CRDs: generated from the Rust types, checked in unchanged, and their CEL rules work.

use hatrack::crd::{self, IAMRoleBinding};
use serde_json::json;

#[test]
fn checked_in_crds_match_the_rust_types() {
    let generated = crd::all_yaml();
    for path in [
        "crds/hatrack.dev.yaml",
        "charts/hatrack/crds/hatrack.dev.yaml",
    ] {
        let full = format!("{}/{path}", env!("CARGO_MANIFEST_DIR"));
        let checked_in = std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{full}: {e}"));
        assert_eq!(
            checked_in, generated,
            "{path} drifted from the Rust types: run `cargo run -- crd > {path}`"
        );
    }
}

#[test]
fn every_spec_field_is_described() {
    for crd in crd::all() {
        let schema = serde_json::to_value(&crd.spec.versions[0].schema).unwrap();
        let spec = &schema["openAPIV3Schema"]["properties"]["spec"]["properties"];
        for (field, s) in spec.as_object().unwrap() {
            assert!(
                s.get("description")
                    .and_then(|d| d.as_str())
                    .is_some_and(|d| d.len() > 10),
                "{} spec.{field} has no description",
                crd.spec.names.kind
            );
        }
    }
}

fn binding(spec: serde_json::Value) -> IAMRoleBinding {
    serde_json::from_value(json!({
        "apiVersion": "hatrack.dev/v1alpha1", "kind": "IAMRoleBinding",
        "metadata": {"name": "b", "namespace": "ns"}, "spec": spec
    }))
    .unwrap()
}

#[test]
fn cel_rules_accept_a_good_binding() {
    let b = binding(
        json!({"serviceAccounts": ["api"], "trust": {"irsa": {}}, "managedPolicyArns": ["arn:aws:iam::aws:policy/ReadOnlyAccess"], "permissionsBoundary": "arn:aws:iam::111122223333:policy/b"}),
    );
    kube::core::cel::validate_cel(&b).unwrap();
}

#[test]
fn cel_rules_reject_what_they_can() {
    for (spec, expected) in [
        (
            json!({"serviceAccounts": ["other:api"]}),
            "ServiceAccount name",
        ),
        (
            json!({"serviceAccounts": ["api"], "trust": {}}),
            "trust must enable",
        ),
        (
            json!({"serviceAccounts": ["api"], "managedPolicyArns": ["ReadOnlyAccess"]}),
            "managedPolicyArn must be an IAM policy ARN",
        ),
        (
            json!({"serviceAccounts": ["api"], "permissionsBoundary": "arn:aws:s3:::bucket"}),
            "permissionsBoundary must be",
        ),
    ] {
        let err =
            kube::core::cel::validate_cel(&binding(spec.clone())).expect_err(&spec.to_string());
        assert!(format!("{err:?}").contains(expected), "{spec}: {err:?}");
    }
}

/// The API server's limit on `spec.tags` is the controller's: a binding it admits always
/// becomes a role, one it would refuse the controller refuses too (IAM's 50 less hatrack's 4).
#[test]
fn the_schema_tag_limit_is_the_controllers() {
    use kube::CustomResourceExt;
    let crd = serde_json::to_value(IAMRoleBinding::crd()).unwrap();
    let tags = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
        ["tags"];
    assert_eq!(
        tags["maxProperties"].as_u64(),
        Some(hatrack::role::MAX_BINDING_TAGS as u64),
        "{tags}"
    );
    let mut settings = hatrack::settings::Settings::example();
    settings.cluster_region = Some("eu-west-1".into());
    let with = |n: usize| {
        let tags: serde_json::Map<String, serde_json::Value> =
            (0..n).map(|i| (format!("k{i}"), json!("v"))).collect();
        binding(json!({"serviceAccounts": ["api"], "tags": tags}))
    };
    let max = hatrack::role::MAX_BINDING_TAGS;
    assert!(hatrack::role::desired_role(&with(max), &settings).is_ok());
    assert!(hatrack::role::desired_role(&with(max + 1), &settings).is_err());
}
