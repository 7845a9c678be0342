//! GitOps health of hatrack's resources, on objects the real controller wrote to the real API
//! server: docs/gitops.md's Argo CD health check (docs/gitops/argocd-health.lua) run by
//! gopher-lua, the Lua interpreter Argo CD embeds, and Flux's kstatus
//! (sigs.k8s.io/cli-utils/pkg/kstatus/status), both in .tools/gitops-health (scripts/gitops,
//! built by scripts/install-test-deps.sh).

use hatrack_test_support as support;

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use support::cluster::{cluster_with_crds, kubectl, run, temp_file};
use support::controller::*;
use support::moto::Moto;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

const LUA: &str = "docs/gitops/argocd-health.lua";

/// (Argo CD status, kstatus status, Argo message) of each object, by name.
fn health(objects: &[Value]) -> Vec<(String, String, String, String)> {
    let mut child = Command::new(root().join(".tools/gitops-health"))
        .arg("-lua")
        .arg(root().join(LUA))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect(".tools/gitops-health (scripts/install-test-deps.sh builds it)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(Value::Array(objects.to_vec()).to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "gitops-health: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let results: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    results
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap().to_string(),
                r["argo"]["status"].as_str().unwrap().to_string(),
                r["kstatus"]["status"].as_str().unwrap().to_string(),
                r["argo"]["message"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// The object as the API server stores it (`kubectl get -o json`).
fn get(cluster: &support::cluster::TestCluster, kind: &str, ns: Option<&str>, name: &str) -> Value {
    let mut cmd = kubectl(cluster);
    cmd.args(["get", kind, name, "-o", "json"]);
    if let Some(ns) = ns {
        cmd.args(["-n", ns]);
    }
    let (ok, out, err) = run(&mut cmd);
    assert!(ok, "kubectl get {kind} {name}: {err}");
    serde_json::from_str(&out).unwrap()
}

#[test]
fn docs_gitops_carries_the_health_check_verbatim() {
    let doc = std::fs::read_to_string(root().join("docs/gitops.md")).unwrap();
    let lua = std::fs::read_to_string(root().join(LUA)).unwrap();
    let indented: String = lua
        .lines()
        .map(|l| format!("    {l}\n").replace("    \n", "\n"))
        .collect();
    assert!(
        doc.contains(&indented),
        "docs/gitops.md's argocd-cm block differs from {LUA} (indented by 4 in the ConfigMap)"
    );
}

#[tokio::test]
async fn argo_cd_and_kstatus_read_the_status_the_controller_writes() {
    let cluster = cluster_with_crds().await;
    let ns = cluster.namespace("gitops").await;
    let client = cluster.client().await;
    let moto = Moto::start();
    moto.create_oidc_provider(&format!("https://{ISSUER_HOST_PATH}"))
        .await;
    let controller = RunningController::builder(client.clone(), &moto)
        .namespace(&ns)
        .resync(Duration::from_secs(30))
        .start();

    // Synced; a second claim of the same ServiceAccount (a conflict only a change can fix).
    create_binding(&client, &ns, "synced", json!({"serviceAccounts": ["api"]})).await;
    wait_ready_reason(&client, &ns, "synced", "Synced", 30).await;
    // creationTimestamp has one-second resolution: the later claim must be visibly later.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    create_binding(
        &client,
        &ns,
        "conflict",
        json!({"serviceAccounts": ["api"]}),
    )
    .await;
    wait_ready_reason(&client, &ns, "conflict", "ServiceAccountConflict", 30).await;

    // Guardrails: one well-formed, one that selects nothing as written.
    let well = format!("{ns}-ok");
    let bad = format!("{ns}-bad");
    for (name, spec) in [
        (&well, json!({"deniedActions": ["iam:*"]})),
        (
            &bad,
            json!({"namespaceSelector": {"matchExpressions": [
                {"key": "team", "operator": "Exists", "values": ["x"]}
            ]}}),
        ),
    ] {
        let file = temp_file(
            cluster,
            &format!("{name}.json"),
            &json!({"apiVersion": "hatrack.dev/v1alpha1", "kind": "IAMGuardrail",
                    "metadata": {"name": name}, "spec": spec})
            .to_string(),
        );
        let (ok, _, err) = run(kubectl(cluster).arg("apply").arg("-f").arg(file));
        assert!(ok, "{err}");
    }
    let guardrail_status = |name: String| async move {
        let g = get(cluster, "iamguardrail", None, &name);
        (g["status"]["observedGeneration"] == g["metadata"]["generation"]).then_some(g)
    };
    let well_obj = wait_for(30, "guardrail status", || guardrail_status(well.clone())).await;
    let bad_obj = wait_for(30, "guardrail status", || guardrail_status(bad.clone())).await;

    let synced = get(cluster, "iamrolebinding", Some(&ns), "synced");
    let conflict = get(cluster, "iamrolebinding", Some(&ns), "conflict");
    assert_eq!(
        conflict["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "Stalled")
            .map(|c| (c["status"].clone(), c["observedGeneration"].clone())),
        Some((json!("True"), conflict["metadata"]["generation"].clone())),
        "the controller marks a conflict Stalled for the current generation: {conflict}"
    );

    // Then the controller stops: a spec change it has not seen, and a binding it never saw.
    controller.stop().await;
    patch_spec(&client, &ns, "synced", json!({"maxSessionDuration": 7200})).await;
    create_binding(&client, &ns, "unseen", json!({"serviceAccounts": ["web"]})).await;
    let stale = get(cluster, "iamrolebinding", Some(&ns), "synced");
    assert_ne!(
        stale["status"]["observedGeneration"],
        stale["metadata"]["generation"]
    );
    let unseen = get(cluster, "iamrolebinding", Some(&ns), "unseen");

    let got = health(&[synced, conflict, well_obj, bad_obj, stale, unseen]);
    let statuses: Vec<(&str, &str, &str)> = got
        .iter()
        .map(|(n, a, k, _)| (n.as_str(), a.as_str(), k.as_str()))
        .collect();
    assert_eq!(
        statuses,
        [
            ("synced", "Healthy", "Current"),
            ("conflict", "Degraded", "Failed"),
            (well.as_str(), "Healthy", "Current"),
            (bad.as_str(), "Degraded", "Failed"),
            ("synced", "Progressing", "InProgress"),
            // kstatus cannot tell a custom resource without status from one that needs none
            // (its documented rule for unknown kinds): Current. Argo's check waits.
            ("unseen", "Progressing", "Current"),
        ]
    );
    assert!(
        got[1].3.starts_with("ServiceAccountConflict: "),
        "{}",
        got[1].3
    );
    assert!(got[4].3.contains("observe generation 2"), "{}", got[4].3);
}
