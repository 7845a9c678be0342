//! Opt-in end-to-end test against a real cluster (kind, k3d, EKS, ...):
//!
//!     KUBECONFIG=~/.kube/config cargo test --test e2e_cluster -- --ignored --nocapture
//!
//! It installs hatrack's CRDs (server-side apply), creates a throw-away namespace, runs the
//! controller in-process against the cluster and a local moto IAM server, and checks apply →
//! Ready + ServiceAccount annotation → edit → delete with finalizer. It needs permission to
//! manage CRDs, namespaces, ServiceAccounts, IAMRoleBindings and Events. IAM stays local (moto),
//! so no AWS account is touched.

mod support;

use std::time::Duration;

use kube::CustomResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;
use support::controller::*;
use support::moto::Moto;

#[tokio::test]
#[ignore = "needs a real cluster: KUBECONFIG=... cargo test --test e2e_cluster -- --ignored"]
async fn binding_lifecycle_on_a_real_cluster() {
    assert!(
        std::env::var_os("KUBECONFIG").is_some(),
        "set KUBECONFIG to the cluster to test against"
    );
    let client = kube::Client::try_default()
        .await
        .expect("cluster reachable");
    let crds: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> = Api::all(client.clone());
    for crd in hatrack::crd::all() {
        let name = crd.metadata.name.clone().unwrap();
        crds.patch(
            &name,
            &PatchParams::apply("hatrack-e2e").force(),
            &Patch::Apply(&crd),
        )
        .await
        .expect("apply CRD");
    }
    let _ = hatrack::crd::IAMRoleBinding::crd();
    tokio::time::sleep(Duration::from_secs(2)).await; // CRD established

    let ns = format!("hatrack-e2e-{}", std::process::id());
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap(),
        )
        .await
        .expect("create namespace");

    let moto = Moto::start();
    moto.create_oidc_provider(&format!("https://{ISSUER_HOST_PATH}"))
        .await;
    let controller = RunningController::start(client.clone(), &moto, Duration::from_secs(30));

    create_service_account(&client, &ns, "api").await;
    create_binding(&client, &ns, "reader", json!({"serviceAccounts": ["api"], "managedPolicyArns": ["arn:aws:iam::aws:policy/ReadOnlyAccess"]})).await;
    let b = wait_ready_reason(&client, &ns, "reader", "Synced", 60).await;
    let arn = b.status.unwrap().role_arn.unwrap();
    wait_for(30, "api annotated", || async {
        (role_arn_annotation(&client, &ns, "api").await.as_deref() == Some(arn.as_str()))
            .then_some(())
    })
    .await;

    patch_spec(
        &client,
        &ns,
        "reader",
        json!({"description": "edited by e2e"}),
    )
    .await;
    let b = wait_ready_reason(&client, &ns, "reader", "Synced", 60).await;
    assert_eq!(b.status.unwrap().observed_generation, Some(2));

    delete_binding(&client, &ns, "reader").await;
    wait_for(60, "binding gone", || async {
        get_binding(&client, &ns, "reader")
            .await
            .is_none()
            .then_some(())
    })
    .await;
    assert!(hatrack_roles(&moto).await.is_empty());
    controller.stop().await;
    let _ = namespaces.delete(&ns, &DeleteParams::default()).await;
}
