//! EKS Pod Identity associations end to end: the real test API server, moto for IAM, the EKS
//! stand-in (tests/support/eks.rs) driven through the real `aws-sdk-eks`, and hatrack's
//! controller in-process between them, watching one fresh namespace per test.

use hatrack_test_support as support;

use std::time::Duration;

use aws_sdk_eks::operation::create_pod_identity_association::builders::CreatePodIdentityAssociationFluentBuilder;
use hatrack::naming;
use serde_json::json;
use support::controller::*;
use support::eks::EksStandIn;

/// A fresh namespace, moto with the cluster's OIDC provider, and the EKS stand-in.
async fn setup() -> (TestNamespace, EksStandIn) {
    let t = TestNamespace::new("assoc").await;
    (t, eks_for_test_cluster().await)
}

/// A controller for `t`'s namespace keeping associations in `eks`, resyncing every 2 s.
fn resyncing_controller(t: &TestNamespace, eks: &EksStandIn) -> RunningController {
    t.controller()
        .eks(eks)
        .resync(Duration::from_secs(2))
        .start()
}

/// Someone else's association (role `by-hand`, no hatrack tags) for ServiceAccount `sa` in
/// `ns`, ready to send (with more fields if the test wants them).
fn create_by_hand(
    eks: &EksStandIn,
    ns: &str,
    sa: &str,
) -> CreatePodIdentityAssociationFluentBuilder {
    eks.sdk_client()
        .create_pod_identity_association()
        .cluster_name(settings().cluster_name)
        .namespace(ns)
        .service_account(sa)
        .role_arn(format!("arn:aws:iam::{ACCOUNT}:role/by-hand"))
}

fn pod_identity(sas: &[&str]) -> serde_json::Value {
    json!({"serviceAccounts": sas, "trust": {"podIdentity": {}}})
}

#[tokio::test]
async fn one_association_per_service_account_kept_in_sync_and_deleted_before_the_role() {
    let (t, eks) = setup().await;
    let (client, ns, moto) = (&t.client, t.ns.as_str(), &t.moto);
    let controller = resyncing_controller(&t, &eks);
    create_binding(client, ns, "app", pod_identity(&["api", "worker"])).await;

    // Role + one association per ServiceAccount, tagged as the binding's, in status.
    let b = wait_ready_reason(client, ns, "app", "Synced", 30).await;
    let status = b.status.unwrap();
    let role_arn = status.role_arn.clone().unwrap();
    assert_eq!(
        hatrack_roles(moto).await,
        vec![status.role_name.clone().unwrap()]
    );
    let made = associations_in(&eks, ns);
    assert_eq!(made.keys().collect::<Vec<_>>(), ["api", "worker"]);
    for a in made.values() {
        assert_eq!(a.role_arn, role_arn);
        assert_eq!(a.cluster, settings().cluster_name);
        assert_eq!(
            a.tags,
            naming::ownership_tags(&settings().cluster_name, ns, "app")
        );
    }
    let listed: Vec<(String, String, String)> = status
        .pod_identity_associations
        .iter()
        .map(|a| {
            (
                a.service_account.clone(),
                a.association_id.clone(),
                a.association_arn.clone(),
            )
        })
        .collect();
    let expected: Vec<(String, String, String)> = made
        .values()
        .map(|a| (a.service_account.clone(), a.id.clone(), a.arn.clone()))
        .collect();
    assert_eq!(listed, expected);
    // IRSA is not asked for: no ServiceAccount annotation.
    create_service_account(client, ns, "api").await;

    // A ServiceAccount leaves the binding: its association goes, the other stays as it was.
    let api_id = made["api"].id.clone();
    patch_spec(client, ns, "app", json!({"serviceAccounts": ["api"]})).await;
    let b = wait_for(
        30,
        "worker's association gone, status at generation 2",
        || async {
            let b = get_binding(client, ns, "app").await?;
            (ready(&b).is_some_and(|r| r.1 == "Synced")
                && !associations_in(&eks, ns).contains_key("worker"))
            .then_some(b)
        },
    )
    .await;
    let left = associations_in(&eks, ns);
    assert_eq!(left.keys().collect::<Vec<_>>(), ["api"]);
    assert_eq!(left["api"].id, api_id, "kept, not recreated");
    assert_eq!(b.status.unwrap().pod_identity_associations.len(), 1);
    assert_eq!(role_arn_annotation(client, ns, "api").await, None);

    // Drift: someone points our association at another role; the resync points it back.
    eks.sdk_client()
        .update_pod_identity_association()
        .cluster_name(settings().cluster_name)
        .association_id(&api_id)
        .role_arn(format!("arn:aws:iam::{ACCOUNT}:role/elsewhere"))
        .send()
        .await
        .unwrap();
    wait_for(30, "association role repaired", || async {
        associations_in(&eks, ns)
            .get("api")
            .is_some_and(|a| a.role_arn == role_arn && a.id == api_id)
            .then_some(())
    })
    .await;

    // Delete: the associations, then the role, are gone.
    delete_binding(client, ns, "app").await;
    wait_binding_gone(client, ns, "app", 30).await;
    assert!(associations_in(&eks, ns).is_empty());
    assert!(hatrack_roles(moto).await.is_empty());
    let counts = controller.metrics.eks_call_counts();
    assert!(
        counts.keys().all(|(_, outcome)| outcome == "success"),
        "{counts:?}"
    );
    controller.stop().await;
}

#[tokio::test]
async fn a_foreign_association_is_left_alone_and_reported() {
    let (t, eks) = setup().await;
    let (client, ns, moto) = (&t.client, t.ns.as_str(), &t.moto);
    let controller = resyncing_controller(&t, &eks);
    let by_hand = format!("arn:aws:iam::{ACCOUNT}:role/by-hand");
    let foreign = create_by_hand(&eks, ns, "web")
        .tags("team", "web")
        .send()
        .await
        .unwrap();
    let foreign_id = foreign
        .association()
        .unwrap()
        .association_id()
        .unwrap()
        .to_string();
    create_binding(client, ns, "app", pod_identity(&["web", "api"])).await;

    let b = wait_ready_reason(client, ns, "app", "ForeignPodIdentityAssociation", 30).await;
    let (status, _, message) = ready(&b).unwrap();
    assert_eq!(status, "False");
    // Someone must act (delete the foreign association): kstatus' Stalled says so.
    let stalled = b
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Stalled"))
        .map(|c| (c.status.clone(), c.reason.clone()));
    assert_eq!(
        stalled,
        Some((
            "True".to_string(),
            "ForeignPodIdentityAssociation".to_string()
        ))
    );
    assert!(
        message.contains(&foreign_id) && message.contains("\"web\""),
        "{message}"
    );
    // The role and the free ServiceAccount's association are made; the foreign one untouched.
    assert_eq!(hatrack_roles(moto).await.len(), 1);
    let now = associations_in(&eks, ns);
    assert_eq!(now["web"].id, foreign_id);
    assert_eq!(now["web"].role_arn, by_hand);
    assert_eq!(
        now["web"].tags,
        std::collections::BTreeMap::from([("team".to_string(), "web".to_string())])
    );
    assert_eq!(
        now["api"].tags,
        naming::ownership_tags(&settings().cluster_name, ns, "app")
    );
    let recorded: Vec<String> = b
        .status
        .unwrap()
        .pod_identity_associations
        .iter()
        .map(|a| a.service_account.clone())
        .collect();
    assert_eq!(recorded, ["api"]);
    let updates = eks.calls().get("UpdatePodIdentityAssociation").copied();
    assert_eq!(updates, None, "nothing updated");

    // Delete: ours goes before the role, the foreign one stays.
    delete_binding(client, ns, "app").await;
    wait_binding_gone(client, ns, "app", 30).await;
    let left = associations_in(&eks, ns);
    assert_eq!(left.keys().collect::<Vec<_>>(), ["web"]);
    assert_eq!(left["web"].id, foreign_id);
    assert_eq!(left["web"].role_arn, by_hand);
    assert!(hatrack_roles(moto).await.is_empty());
    controller.stop().await;
}

#[tokio::test]
async fn the_binding_takes_a_service_account_once_the_foreign_association_is_gone() {
    let (t, eks) = setup().await;
    let (client, ns) = (&t.client, t.ns.as_str());
    let controller = resyncing_controller(&t, &eks);
    let foreign = create_by_hand(&eks, ns, "web").send().await.unwrap();
    let foreign_id = foreign.association().unwrap().association_id().unwrap();
    create_binding(client, ns, "app", pod_identity(&["web"])).await;
    wait_ready_reason(client, ns, "app", "ForeignPodIdentityAssociation", 30).await;
    eks.sdk_client()
        .delete_pod_identity_association()
        .cluster_name(settings().cluster_name)
        .association_id(foreign_id)
        .send()
        .await
        .unwrap();
    let b = wait_ready_reason(client, ns, "app", "Synced", 30).await;
    let web = &associations_in(&eks, ns)["web"];
    assert_ne!(web.id, foreign_id);
    assert_eq!(Some(&web.role_arn), b.status.unwrap().role_arn.as_ref());
    controller.stop().await;
}

#[tokio::test]
async fn irsa_bindings_make_no_eks_calls() {
    let (t, eks) = setup().await;
    let (client, ns) = (&t.client, t.ns.as_str());
    let controller = resyncing_controller(&t, &eks);
    create_binding(client, ns, "app", json!({"serviceAccounts": ["api"]})).await;
    let b = wait_ready_reason(client, ns, "app", "Synced", 30).await;
    assert!(b.status.unwrap().pod_identity_associations.is_empty());
    assert!(eks.calls().is_empty(), "{:?}", eks.calls());
    // Switching to Pod Identity makes the association; switching back removes it.
    patch_spec(client, ns, "app", json!({"trust": {"podIdentity": {}}})).await;
    wait_for(30, "association made", || async {
        associations_in(&eks, ns).contains_key("api").then_some(())
    })
    .await;
    // A merge patch: null removes podIdentity.
    patch_spec(
        client,
        ns,
        "app",
        json!({"trust": {"irsa": {}, "podIdentity": null}}),
    )
    .await;
    wait_for(30, "association removed, IRSA annotation back", || async {
        let gone = associations_in(&eks, ns).is_empty();
        let b = get_binding(client, ns, "app").await?;
        (gone
            && ready(&b).is_some_and(|r| r.1 == "Synced")
            && b.status?.pod_identity_associations.is_empty())
        .then_some(())
    })
    .await;
    controller.stop().await;
}

#[tokio::test]
async fn orphaned_associations_are_reported_listed_and_deleted_only_when_configured() {
    use hatrack::controller::orphans::SweepOptions;
    let (t, eks) = setup().await;
    let (client, ns, moto) = (&t.client, t.ns.as_str(), &t.moto);
    let controller = t.controller().eks(&eks).start();
    let mut retained = pod_identity(&["c"]);
    retained["deletionPolicy"] = json!("Retain");
    for (name, spec) in [
        ("kept", pod_identity(&["a"])),
        ("lost", pod_identity(&["b"])),
        ("retained", retained),
    ] {
        create_binding(client, ns, name, spec).await;
        wait_ready_reason(client, ns, name, "Synced", 30).await;
    }
    // Someone else's association, untagged: never hatrack's to judge.
    create_by_hand(&eks, ns, "by-hand")
        .send()
        .await
        .expect("create a foreign association");
    // Retained on purpose: its role and association stay, and are no orphans.
    delete_binding(client, ns, "retained").await;
    wait_binding_gone(client, ns, "retained", 30).await;
    controller.stop().await;
    // Lost without its cleanup, while no controller runs (see `delete_by_force`).
    delete_by_force(client, ns, "lost").await;
    assert_eq!(
        associations_in(&eks, ns).keys().collect::<Vec<_>>(),
        ["a", "b", "by-hand", "c"]
    );

    let sweep = |delete| SweepOptions {
        interval: Duration::from_millis(500),
        delete,
    };
    let reporting = t.controller().eks(&eks).sweeping(sweep(false)).start();
    wait_for(60, "one orphaned association and role reported", || async {
        let text = reporting.metrics.encode();
        (metric(&text, "hatrack_orphaned_pod_identity_associations") == Some(1.0)
            && metric(&text, "hatrack_orphaned_roles") == Some(1.0))
        .then_some(())
    })
    .await;
    // Reported for a few sweeps, deleted by none.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(associations_in(&eks, ns).len(), 4);
    assert_eq!(hatrack_roles(moto).await.len(), 3);
    reporting.stop().await;

    // `hatrack orphans` lists the association (with its ServiceAccount) and the role.
    let cluster = t.cluster;
    let mut cli = std::process::Command::new(env!("CARGO_BIN_EXE_hatrack"));
    cli.args(["orphans", "--cluster-name", &settings().cluster_name])
        .args([
            "--account-id",
            ACCOUNT,
            "--namespace",
            ns,
            "--output",
            "json",
        ])
        .args(["--eks-endpoint", &eks.endpoint, "--aws-region", &eks.region])
        .env("KUBECONFIG", &cluster.kubeconfig)
        .env("HATRACK_IAM_ENDPOINT", &moto.endpoint)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env_remove("AWS_PROFILE");
    // The EKS stand-in is served by this test's runtime: wait off it.
    let out = tokio::task::spawn_blocking(move || cli.output())
        .await
        .unwrap()
        .expect("run hatrack orphans");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).expect("JSON list");
    let found: Vec<(String, String, Option<String>)> = listed
        .iter()
        .map(|o| {
            (
                o["kind"].as_str().unwrap().to_string(),
                o["binding"].as_str().unwrap().to_string(),
                o["serviceAccount"].as_str().map(str::to_string),
            )
        })
        .collect();
    assert_eq!(
        found,
        vec![
            (
                "PodIdentityAssociation".to_string(),
                "lost".to_string(),
                Some("b".to_string())
            ),
            ("Role".to_string(), "lost".to_string(), None),
        ]
    );
    assert_eq!(listed[0]["name"], json!(associations_in(&eks, ns)["b"].id));

    // Configured to delete: the association and then the role go; the rest stays.
    let deleting = t.controller().eks(&eks).sweeping(sweep(true)).start();
    wait_for(60, "orphaned association and role deleted", || async {
        (!associations_in(&eks, ns).contains_key("b") && hatrack_roles(moto).await.len() == 2)
            .then_some(())
    })
    .await;
    assert_eq!(
        associations_in(&eks, ns).keys().collect::<Vec<_>>(),
        ["a", "by-hand", "c"]
    );
    assert_eq!(
        metric(
            &deleting.metrics.encode(),
            "hatrack_orphaned_pod_identity_associations_deleted_total"
        ),
        Some(1.0)
    );
    deleting.stop().await;
}
