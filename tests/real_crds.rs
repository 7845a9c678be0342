//! hatrack's CRDs on a real kube-apiserver (tests/support/cluster.rs): they install with
//! client-side and server-side apply, every rejection docs/binding.md promises comes from the real
//! server's schema and CEL evaluation, unknown fields are pruned, and `kubectl get` / `kubectl
//! explain` show what docs/binding.md says.

use hatrack_test_support as support;

use std::path::Path;

use hatrack::crd::IAMRoleBinding;
use kube::Resource;
use kube::api::{Api, ApiResource, DynamicObject, PostParams};
use serde_json::{Value, json};
use support::cluster::{cluster_with_crds, kubectl, run};

fn crds_dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/crds"))
}

fn bindings_api(client: kube::Client, ns: &str) -> Api<DynamicObject> {
    let resource = ApiResource::erase::<IAMRoleBinding>(&());
    Api::namespaced_with(client, ns, &resource)
}

fn binding(name: &str, spec: Value) -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": IAMRoleBinding::api_version(&()), "kind": IAMRoleBinding::kind(&()),
        "metadata": {"name": name},
        "spec": spec,
    }))
    .expect("binding object")
}

#[tokio::test]
async fn crds_install_with_client_side_and_server_side_apply() {
    let cluster = cluster_with_crds().await;
    // Already applied server-side by the harness (field manager hatrack-tests): client-side
    // apply over it, then server-side apply again as a different manager, must both succeed and
    // leave the CRD unchanged.
    let (ok, out, err) = run(kubectl(cluster).arg("apply").arg("-f").arg(crds_dir()));
    assert!(ok, "kubectl apply -f crds/: {out}{err}");
    let (ok, out, err) = run(kubectl(cluster)
        .args(["apply", "--server-side", "--force-conflicts", "-f"])
        .arg(crds_dir()));
    assert!(ok, "kubectl apply --server-side -f crds/: {out}{err}");
    let (ok, out, err) = run(kubectl(cluster).arg("diff").arg("-f").arg(crds_dir()));
    assert!(ok, "kubectl diff after apply shows a change:\n{out}{err}");
    let (ok, out, err) = run(kubectl(cluster).args([
        "get",
        "crd",
        "iamrolebindings.hatrack.dev",
        "iamguardrails.hatrack.dev",
        "-o",
        "jsonpath={range .items[*]}{.metadata.name}={.status.conditions[?(@.type==\"Established\")].status} {end}",
    ]));
    assert!(ok, "{err}");
    assert_eq!(
        out.trim(),
        "iamrolebindings.hatrack.dev=True iamguardrails.hatrack.dev=True"
    );
}

#[tokio::test]
async fn the_real_server_rejects_what_the_readme_says_the_schema_rejects() {
    let cluster = cluster_with_crds().await;
    let ns = cluster.namespace("crd-rules").await;
    let api = bindings_api(cluster.client().await, &ns);
    let too_many_tags: serde_json::Map<String, Value> =
        (0..48).map(|i| (format!("k{i}"), json!("v"))).collect();
    let cases = [
        (
            json!({"serviceAccounts": ["other:api"]}),
            "each serviceAccount must be a ServiceAccount name",
        ),
        (
            json!({"serviceAccounts": ["system:serviceaccount:kube-system:admin"]}),
            "each serviceAccount must be a ServiceAccount name",
        ),
        (
            json!({"serviceAccounts": ["api", "api"]}),
            "Duplicate value",
        ),
        (json!({"serviceAccounts": []}), "spec.serviceAccounts"),
        (json!({}), "spec.serviceAccounts: Required value"),
        (
            json!({"serviceAccounts": ["api"], "managedPolicyArns": ["ReadOnlyAccess"]}),
            "each managedPolicyArn must be an IAM policy ARN",
        ),
        (
            json!({"serviceAccounts": ["api"], "managedPolicyArns": ["arn:aws:iam::aws:policy/A", "arn:aws:iam::aws:policy/A"]}),
            "Duplicate value",
        ),
        (
            json!({"serviceAccounts": ["api"], "permissionsBoundary": "arn:aws:s3:::bucket"}),
            "permissionsBoundary must be an IAM policy ARN",
        ),
        (
            json!({"serviceAccounts": ["api"], "trust": {}}),
            "trust must enable irsa, podIdentity or both",
        ),
        (
            json!({"serviceAccounts": ["api"], "maxSessionDuration": 3599}),
            "spec.maxSessionDuration",
        ),
        (
            json!({"serviceAccounts": ["api"], "maxSessionDuration": 43201}),
            "spec.maxSessionDuration",
        ),
        (
            json!({"serviceAccounts": ["api"], "tags": too_many_tags}),
            "spec.tags: Too many",
        ),
        (
            json!({"serviceAccounts": ["api"], "tags": {"HATRACK.DEV/cluster": "other"}}),
            "tag keys may not start with aws: or hatrack.dev/",
        ),
        (
            json!({"serviceAccounts": ["api"], "tags": {"Aws:x": "y"}}),
            "tag keys may not start with aws: or hatrack.dev/",
        ),
        (
            json!({"serviceAccounts": ["api"], "deletionPolicy": "Orphan"}),
            "spec.deletionPolicy: Unsupported value",
        ),
        (
            json!({"serviceAccounts": ["api"], "inlinePolicies": {"p": {"Version": "2012-10-17"}}}),
            "Statement: Required value",
        ),
    ];
    let mut failures = Vec::new();
    for (i, (spec, expected)) in cases.iter().enumerate() {
        match api
            .create(
                &PostParams::default(),
                &binding(&format!("bad-{i}"), spec.clone()),
            )
            .await
        {
            Ok(_) => failures.push(format!("{spec}: accepted, expected `{expected}`")),
            Err(kube::Error::Api(status)) => {
                if status.code != 422 || !status.message.contains(expected) {
                    failures.push(format!(
                        "{spec}: {} {}, expected `{expected}`",
                        status.code, status.message
                    ));
                }
            }
            Err(e) => failures.push(format!("{spec}: {e}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // And the good ones are accepted, with every optional field at its edge.
    let good = [
        json!({"serviceAccounts": ["api", "worker.v2"]}),
        json!({"serviceAccounts": ["api"], "trust": {"irsa": {}, "podIdentity": {}}, "maxSessionDuration": 43200,
               "managedPolicyArns": ["arn:aws:iam::aws:policy/ReadOnlyAccess", "arn:aws-us-gov:iam::111122223333:policy/x/y"],
               "permissionsBoundary": "arn:aws:iam::111122223333:policy/boundary", "deletionPolicy": "Retain",
               "tags": {"team": "payments"},
               "inlinePolicies": {"p": {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}]}}}),
    ];
    for (i, spec) in good.iter().enumerate() {
        api.create(
            &PostParams::default(),
            &binding(&format!("good-{i}"), spec.clone()),
        )
        .await
        .unwrap_or_else(|e| panic!("{spec} rejected: {e}"));
    }
}

#[tokio::test]
async fn unknown_fields_are_pruned_and_inline_policies_kept_whole() {
    let cluster = cluster_with_crds().await;
    let ns = cluster.namespace("crd-prune").await;
    let api = bindings_api(cluster.client().await, &ns);
    let policy = json!({"Version": "2012-10-17", "Statement": [{"Sid": "Read", "Effect": "Allow", "Action": ["s3:GetObject"], "Resource": "*", "Condition": {"StringEquals": {"aws:ResourceTag/team": "x"}}}]});
    let created = api
        .create(
            &PostParams::default(),
            &binding(
                "pruned",
                json!({"serviceAccounts": ["api"], "bogus": 1, "trust": {"irsa": {"audience": "sts.amazonaws.com", "extra": true}}, "inlinePolicies": {"p": policy}}),
            ),
        )
        .await
        .expect("create with unknown fields");
    let spec = &created.data["spec"];
    assert!(spec.get("bogus").is_none(), "spec.bogus kept: {spec}");
    assert!(
        spec["trust"]["irsa"].get("extra").is_none(),
        "trust.irsa.extra kept: {spec}"
    );
    // Policy documents are kept as written (x-kubernetes-preserve-unknown-fields).
    assert_eq!(spec["inlinePolicies"]["p"], policy);
    // And the stored object reads back as hatrack's typed resource.
    let typed: Api<IAMRoleBinding> = Api::namespaced(cluster.client().await, &ns);
    let b = typed.get("pruned").await.expect("typed get");
    assert_eq!(b.spec.service_accounts, vec!["api".to_string()]);
}

#[tokio::test]
async fn kubectl_get_and_explain_show_what_the_readme_says() {
    let cluster = cluster_with_crds().await;
    let ns = cluster.namespace("crd-kubectl").await;
    let api = bindings_api(cluster.client().await, &ns);
    api.create(
        &PostParams::default(),
        &binding("reader", json!({"serviceAccounts": ["api"]})),
    )
    .await
    .expect("create");
    let status: Api<IAMRoleBinding> = Api::namespaced(cluster.client().await, &ns);
    status
        .patch_status(
            "reader",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(json!({"status": {
                "roleName": "hatrack-demo-abc", "roleArn": "arn:aws:iam::111122223333:role/hatrack/hatrack-demo-abc",
                "conditions": [{"type": "Ready", "status": "True", "reason": "Synced", "message": "in sync",
                                "lastTransitionTime": "2026-01-01T00:00:00Z"}]}})),
        )
        .await
        .expect("status patch");

    let (ok, out, err) = run(kubectl(cluster).args(["get", "irb", "-n", &ns]));
    assert!(ok, "{err}");
    let header: Vec<&str> = out
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    assert_eq!(header, ["NAME", "ROLE", "READY", "REASON", "AGE"], "{out}");
    let row: Vec<&str> = out
        .lines()
        .nth(1)
        .unwrap_or("")
        .split_whitespace()
        .collect();
    assert_eq!(
        &row[..4],
        ["reader", "hatrack-demo-abc", "True", "Synced"],
        "{out}"
    );

    let (ok, out, err) = run(kubectl(cluster).args(["get", "irb", "-n", &ns, "-o", "wide"]));
    assert!(ok, "{err}");
    assert!(out.lines().next().unwrap_or("").contains("ARN"), "{out}");
    assert!(
        out.contains("arn:aws:iam::111122223333:role/hatrack/hatrack-demo-abc"),
        "{out}"
    );

    let (ok, out, err) = run(kubectl(cluster).args(["explain", "iamrolebinding.spec"]));
    assert!(ok, "{err}");
    for field in [
        "serviceAccounts",
        "trust",
        "managedPolicyArns",
        "inlinePolicies",
        "permissionsBoundary",
        "maxSessionDuration",
        "description",
        "tags",
        "deletionPolicy",
    ] {
        assert!(out.contains(field), "kubectl explain lacks {field}:\n{out}");
    }
    assert!(
        out.contains("ServiceAccounts of other namespaces cannot be named"),
        "{out}"
    );
    let (ok, out, err) = run(kubectl(cluster).args(["explain", "iamguardrail.spec"]));
    assert!(
        ok && out.contains("requiredPermissionsBoundary"),
        "{out}{err}"
    );
}

/// The controller writes a binding's status with `status::merge_patch`, which carries the
/// resourceVersion of the copy the pass worked from. The real server takes it while the binding
/// is unchanged and refuses it (409) once anything wrote the binding since — a status write
/// included — so a pass on a stale copy overwrites nothing (its status, conditions of other
/// types and Events are those of a newer pass).
#[tokio::test]
async fn a_status_write_from_a_stale_copy_is_refused() {
    use hatrack::controller::status::merge_patch;
    use hatrack::crd::IAMRoleBindingStatus;
    use kube::api::{Patch, PatchParams};
    let cluster = cluster_with_crds().await;
    let ns = cluster.namespace("crd-stale").await;
    bindings_api(cluster.client().await, &ns)
        .create(
            &PostParams::default(),
            &binding("b", json!({"serviceAccounts": ["api"]})),
        )
        .await
        .expect("create");
    let api: Api<IAMRoleBinding> = Api::namespaced(cluster.client().await, &ns);
    let copy = api.get("b").await.expect("get");
    let version = copy.metadata.resource_version.clone();
    let status = |role: &str| IAMRoleBindingStatus {
        role_name: Some(role.into()),
        ..Default::default()
    };
    let params = PatchParams::default();
    let first = api
        .patch_status(
            "b",
            &params,
            &Patch::Merge(merge_patch(version.as_deref(), &status("first"))),
        )
        .await
        .expect("a write from the current copy is taken");
    // A second pass still working from the same copy: refused, the first write stands.
    match api
        .patch_status(
            "b",
            &params,
            &Patch::Merge(merge_patch(version.as_deref(), &status("stale"))),
        )
        .await
    {
        Err(kube::Error::Api(s)) => assert_eq!(s.code, 409, "{s:?}"),
        other => panic!("a write from a stale copy was not refused: {other:?}"),
    }
    let now = api.get("b").await.unwrap();
    assert_eq!(now.status.unwrap().role_name.as_deref(), Some("first"));
    // From the copy the first write returned, the next write is taken.
    api.patch_status(
        "b",
        &params,
        &Patch::Merge(merge_patch(
            first.metadata.resource_version.as_deref(),
            &status("next"),
        )),
    )
    .await
    .expect("a write from the newest copy is taken");
}
