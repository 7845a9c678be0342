//! A cluster's identity that cannot collide (issue 14), against a real moto IAM server: two
//! clusters with the same name in different regions get different roles, neither can assume,
//! modify or delete the other's, and a role made by an earlier version (named after the
//! cluster's name alone) is migrated in place by the first cluster that owns it.

use hatrack_test_support as support;

use hatrack::crd::IAMRoleBinding;
use hatrack::naming;
use hatrack::role::{self, DesiredRole};
use hatrack::settings::Settings;
use hatrack::sync::{CleanupOutcome, Owner, SyncOutcome, delete_owned_role, sync_role};
use hatrack::trust::POD_IDENTITY_PRINCIPAL;
use iam_eval::{Decision, Principal, Request, evaluate};
use serde_json::json;
use support::moto::Moto;

const ACCOUNT: &str = "123456789012";

/// Cluster `prod` in `region` (`None`: an earlier version, which knew only the name).
fn cluster(region: Option<&str>) -> Settings {
    let mut s = Settings::example();
    s.account_id = ACCOUNT.into();
    s.cluster_account_id = ACCOUNT.into();
    s.cluster_name = "prod".into();
    s.cluster_region = region.map(str::to_string);
    s
}

fn binding(status_role_name: Option<&str>) -> IAMRoleBinding {
    let mut b: IAMRoleBinding = serde_json::from_value(json!({
        "apiVersion": "hatrack.dev/v1alpha1", "kind": "IAMRoleBinding",
        "metadata": {"name": "reader", "namespace": "payments"},
        "spec": {"serviceAccounts": ["api"], "trust": {"podIdentity": {}},
                 "managedPolicyArns": ["arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess"]}
    }))
    .unwrap();
    if let Some(name) = status_role_name {
        b.status = Some(hatrack::crd::IAMRoleBindingStatus {
            role_name: Some(name.into()),
            ..Default::default()
        });
    }
    b
}

fn desired(s: &Settings, b: &IAMRoleBinding) -> DesiredRole {
    role::desired_role(b, s).expect("valid binding")
}

fn owner(s: &Settings) -> Owner {
    Owner {
        cluster: s.cluster_name.clone(),
        cluster_arn: s.cluster_arn(),
        namespace: "payments".into(),
        name: "reader".into(),
    }
}

/// EKS Pod Identity assuming a role for pod `payments/api` of cluster `s`, with the session
/// tags EKS documents.
fn pod_of(s: &Settings) -> Request {
    Request {
        principal: Some(Principal::Service(POD_IDENTITY_PRINCIPAL.into())),
        action: "sts:AssumeRole".into(),
        ..Request::default()
    }
    .with("aws:SourceAccount", ACCOUNT)
    .with("aws:RequestTag/eks-cluster-arn", &s.cluster_arn().unwrap())
    .with("aws:RequestTag/eks-cluster-name", &s.cluster_name)
    .with("aws:RequestTag/kubernetes-namespace", "payments")
    .with("aws:RequestTag/kubernetes-service-account", "api")
}

#[tokio::test]
async fn same_named_clusters_in_two_regions_get_separate_roles_neither_can_take_over() {
    let moto = Moto::start();
    let (iam, _) = moto.iam();
    let eu = cluster(Some("eu-west-1"));
    let us = cluster(Some("us-east-1"));
    let (d_eu, d_us) = (desired(&eu, &binding(None)), desired(&us, &binding(None)));
    assert_ne!(d_eu.role.role_name, d_us.role.role_name);
    for (d, s) in [(&d_eu, &eu), (&d_us, &us)] {
        match sync_role(&iam, d, &owner(s)).await.unwrap() {
            SyncOutcome::Synced { created, .. } => assert!(created),
            SyncOutcome::NotOwned => panic!("{} not owned", d.role.role_name),
        }
    }
    let role_eu = iam.get_role(&d_eu.role.role_name).await.unwrap().unwrap();
    let role_us = iam.get_role(&d_us.role.role_name).await.unwrap().unwrap();
    assert_eq!(
        role_eu
            .tags
            .get(naming::TAG_CLUSTER_ARN)
            .map(String::as_str),
        Some("arn:aws:eks:eu-west-1:123456789012:cluster/prod")
    );

    // Each role's trust admits only its own cluster's pods, though names, namespace and
    // ServiceAccount are the same.
    let may = |trust: &serde_json::Value, s: &Settings| {
        evaluate(trust, &pod_of(s)).unwrap() == Decision::Allow
    };
    assert!(may(&role_eu.assume_role_policy, &eu));
    assert!(!may(&role_eu.assume_role_policy, &us));
    assert!(may(&role_us.assume_role_policy, &us));
    assert!(!may(&role_us.assume_role_policy, &eu));

    // us cannot sync its binding onto eu's role, nor delete it.
    let mut hijack = d_us.clone();
    hijack.role.role_name = d_eu.role.role_name.clone();
    assert_eq!(
        sync_role(&iam, &hijack, &owner(&us)).await.unwrap(),
        SyncOutcome::NotOwned
    );
    assert_eq!(
        delete_owned_role(&iam, &d_eu.role.role_name, &owner(&us))
            .await
            .unwrap(),
        CleanupOutcome::NotOwned
    );
    let after = iam.get_role(&d_eu.role.role_name).await.unwrap().unwrap();
    assert_eq!(after.assume_role_policy, role_eu.assume_role_policy);
    assert_eq!(after.tags, role_eu.tags);
    let _ = role_us;
}

#[tokio::test]
async fn a_role_made_by_an_earlier_version_is_migrated_in_place_by_its_first_owner() {
    let moto = Moto::start();
    let (iam, metrics) = moto.iam();
    // An earlier version, which keyed names and ownership on the cluster's name alone.
    let legacy = cluster(None);
    let d_legacy = desired(&legacy, &binding(None));
    let legacy_name = d_legacy.role.role_name.clone();
    sync_role(&iam, &d_legacy, &owner(&legacy)).await.unwrap();
    assert!(
        !iam.get_role(&legacy_name)
            .await
            .unwrap()
            .unwrap()
            .tags
            .contains_key(naming::TAG_CLUSTER_ARN)
    );

    // Upgraded with its region: the binding's status names the legacy role, which is kept,
    // tagged with the cluster's ARN and pinned to it; no role is created.
    let eu = cluster(Some("eu-west-1"));
    let d_eu = desired(&eu, &binding(Some(&legacy_name)));
    assert_eq!(d_eu.role.role_name, legacy_name);
    let creates_before = metrics
        .iam_call_counts()
        .get(&("CreateRole".to_string(), "success".to_string()))
        .copied();
    match sync_role(&iam, &d_eu, &owner(&eu)).await.unwrap() {
        SyncOutcome::Synced {
            created, writes, ..
        } => {
            assert!(!created, "{writes:?}");
            assert!(writes.contains(&"TagRole") && writes.contains(&"UpdateAssumeRolePolicy"));
        }
        SyncOutcome::NotOwned => panic!("the legacy role was not recognised"),
    }
    assert_eq!(
        metrics
            .iam_call_counts()
            .get(&("CreateRole".to_string(), "success".to_string()))
            .copied(),
        creates_before
    );
    let migrated = iam.get_role(&legacy_name).await.unwrap().unwrap();
    assert_eq!(
        migrated.tags.get(naming::TAG_CLUSTER_ARN),
        eu.cluster_arn().as_ref()
    );
    assert_eq!(
        evaluate(&migrated.assume_role_policy, &pod_of(&eu)).unwrap(),
        Decision::Allow
    );

    // The same-named cluster in us-east-1, whose binding status names the same legacy role:
    // the role is eu's now, so us does not own it (its controller falls back to the role
    // keyed on its own ARN) and cannot assume it.
    let us = cluster(Some("us-east-1"));
    let d_us = desired(&us, &binding(Some(&legacy_name)));
    assert_eq!(d_us.role.role_name, legacy_name);
    assert_eq!(
        sync_role(&iam, &d_us, &owner(&us)).await.unwrap(),
        SyncOutcome::NotOwned
    );
    assert_ne!(
        evaluate(&migrated.assume_role_policy, &pod_of(&us)).unwrap(),
        Decision::Allow
    );
    let own = naming::role_name(&us.cluster_identity(), "payments", "reader");
    assert_ne!(own, legacy_name);
}

/// An install made before the cluster's region was required (roles keyed on its name alone),
/// upgraded: the controller restarted with the region keeps every role under its name, tags it
/// with the cluster's ARN and pins Pod Identity trust to it; it creates no role, and none of
/// the old roles is an orphan. Real API server, real controller, moto.
#[tokio::test]
async fn upgrading_a_name_only_install_adopts_its_roles_in_place() {
    use hatrack::controller::orphans::{AccountToSweep, ClusterId, find};
    use std::time::Duration;
    use support::controller::{
        RunningController, create_binding, get_binding, hatrack_roles, settings, wait_for,
        wait_ready_reason,
    };

    let cluster = support::cluster::cluster_with_crds().await;
    let ns = cluster.namespace("upgrade").await;
    let client = cluster.client().await;
    let moto = Moto::start();
    moto.create_oidc_provider(&format!(
        "https://{}",
        support::controller::ISSUER_HOST_PATH
    ))
    .await;
    let upgraded = settings();
    let arn = upgraded
        .cluster_arn()
        .expect("the test cluster has a region");
    let mut before = upgraded.clone();
    before.cluster_region = None;

    // The earlier install: bindings of both trusts synced with name-keyed roles.
    let old = RunningController::builder(client.clone(), &moto)
        .namespace(&ns)
        .resync(Duration::from_secs(60))
        .settings(before.clone())
        .start();
    let s3 = "arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess";
    create_binding(
        &client,
        &ns,
        "irsa",
        json!({"serviceAccounts": ["api"], "managedPolicyArns": [s3]}),
    )
    .await;
    create_binding(&client, &ns, "pods", json!({"serviceAccounts": ["worker"], "trust": {"podIdentity": {}}, "managedPolicyArns": [s3]})).await;
    let mut names = Vec::new();
    for b in ["irsa", "pods"] {
        let synced = wait_ready_reason(&client, &ns, b, "Synced", 30).await;
        let name = synced.status.unwrap().role_name.unwrap();
        assert_eq!(name, naming::role_name(&before.cluster_name, &ns, b));
        assert_ne!(name, naming::role_name(&arn, &ns, b));
        names.push(name);
    }
    let (iam, _) = moto.iam();
    for name in &names {
        let role = iam.get_role(name).await.unwrap().unwrap();
        assert!(!role.tags.contains_key(naming::TAG_CLUSTER_ARN), "{name}");
    }
    old.stop().await;

    // Upgraded: the same cluster, now known by its ARN.
    let new = RunningController::builder(client.clone(), &moto)
        .namespace(&ns)
        .resync(Duration::from_secs(60))
        .settings(upgraded.clone())
        .start();
    for name in &names {
        let role = wait_for(
            30,
            &format!("{name} tagged with the cluster's ARN"),
            || async {
                let role = iam.get_role(name).await.unwrap().unwrap();
                (role.tags.get(naming::TAG_CLUSTER_ARN) == Some(&arn)).then_some(role)
            },
        )
        .await;
        assert_eq!(role.managed_policy_arns.iter().collect::<Vec<_>>(), [s3]);
    }
    // Pod Identity trust names the cluster's ARN now.
    let pods_role = iam.get_role(&names[1]).await.unwrap().unwrap();
    assert!(
        pods_role.assume_role_policy.to_string().contains(&arn),
        "{}",
        pods_role.assume_role_policy
    );
    for (b, name) in ["irsa", "pods"].iter().zip(&names) {
        let after = wait_ready_reason(&client, &ns, b, "Synced", 30).await;
        assert_eq!(after.status.unwrap().role_name.as_ref(), Some(name));
    }
    let mut roles = hatrack_roles(&moto).await;
    roles.sort();
    assert_eq!(roles, names, "no role made beside the adopted ones");
    let creates = new
        .metrics
        .iam_call_counts()
        .iter()
        .filter(|((op, _), _)| op == "CreateRole")
        .map(|(_, n)| *n)
        .sum::<u64>();
    assert_eq!(creates, 0, "the upgraded controller created a role");

    // A binding made after the upgrade gets the ARN-keyed name.
    create_binding(
        &client,
        &ns,
        "later",
        json!({"serviceAccounts": ["cron"], "managedPolicyArns": [s3]}),
    )
    .await;
    let later = wait_ready_reason(&client, &ns, "later", "Synced", 30).await;
    assert_eq!(
        later.status.unwrap().role_name,
        Some(naming::role_name(&arn, &ns, "later"))
    );

    // The sweep, with the cluster's identity as the upgraded controller knows it: no orphan.
    let orphans = find(
        &client,
        ClusterId {
            name: &upgraded.cluster_name,
            arn: Some(&arn),
        },
        ACCOUNT,
        &upgraded.role_path,
        &[AccountToSweep {
            account_id: ACCOUNT.into(),
            iam: iam.clone(),
        }],
        &[],
        // Roles only: this test has no EKS.
        None,
        Some(&ns),
    )
    .await
    .unwrap();
    assert_eq!(orphans, vec![], "an adopted role was judged an orphan");
    assert!(get_binding(&client, &ns, "irsa").await.is_some());
    new.stop().await;
}
