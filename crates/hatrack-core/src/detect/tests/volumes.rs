//! Secret and ConfigMap volumes, and downward API files.

use serde_json::json;

use super::*;

#[test]
fn mounted_secret_with_credentials_is_denied_and_items_restrict_keys() {
    let mut view = InMemoryView::new();
    secret(
        &mut view,
        "cloud-credentials",
        &[
            (
                "cloud",
                &format!("[default]\naws_access_key_id={ID}\naws_secret_access_key={SECRET}\n"),
            ),
            ("ca.crt", "-----BEGIN CERTIFICATE-----"),
        ],
    );
    let obj = deployment(json!({
        "containers": [
            {"name": "velero", "volumeMounts": [{"name": "creds", "mountPath": "/credentials"}]},
            {"name": "sidecar", "volumeMounts": [{"name": "creds", "mountPath": "/c"}, {"name": "ca", "mountPath": "/ca"}]}
        ],
        "volumes": [
            {"name": "creds", "secret": {"secretName": "cloud-credentials"}},
            {"name": "ca", "secret": {"secretName": "cloud-credentials", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
            {"name": "proj", "projected": {"sources": [{"serviceAccountToken": {"path": "t"}}, {"secret": {"name": "cloud-credentials"}}]}}
        ]
    }));
    let e = eval_with(&obj, &view);
    let got = rules_and_paths(&e);
    assert_eq!(
        got,
        [
            (
                "credentials-in-referenced-secret",
                "spec.template.spec.volumes[0]"
            ),
            (
                "credentials-in-referenced-secret",
                "spec.template.spec.volumes[2].projected.sources[1]"
            ),
        ]
    );
    assert!(
        e.findings[0]
            .message
            .contains("containers 'velero', 'sidecar'"),
        "{}",
        e.findings[0].message
    );
    assert!(
        e.findings[1]
            .message
            .contains("not mounted by any container")
    );
}

#[test]
fn annotations_and_labels_count_only_when_the_downward_api_exposes_them() {
    let mut obj = deployment(json!({"containers": [{"name": "a",
        "env": [{"name": "K", "valueFrom": {"fieldRef": {"fieldPath": "metadata.annotations['k']"}}}]}]}));
    obj["spec"]["template"]["metadata"] = json!({"annotations": {"k": ID, "note": ID}});
    assert_eq!(rules(&eval(&obj)), ["literal-access-key"]);
    obj["spec"]["template"]["spec"]["containers"][0]["env"] = json!([]);
    assert!(eval(&obj).findings.is_empty());
    obj["spec"]["template"]["spec"]["volumes"] = json!([{"name": "d", "downwardAPI": {"items": [
        {"path": "all", "fieldRef": {"fieldPath": "metadata.annotations"}}]}}]);
    assert_eq!(
        rules(&eval(&obj)),
        ["literal-access-key", "literal-access-key"]
    );
}
