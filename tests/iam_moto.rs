//! The IAM half of reconcile against a real moto IAM server, through aws-sdk-iam over HTTP.

use hatrack_test_support as support;

use hatrack::crd::IAMRoleBinding;
use hatrack::role::{self, DesiredRole};
use hatrack::settings::Settings;
use hatrack::sync::{CleanupOutcome, Owner, SyncOutcome, delete_owned_role, sync_role};
use serde_json::{Value, json};
use support::moto::Moto;

fn settings() -> Settings {
    let mut s = Settings::example();
    s.account_id = "123456789012".into();
    s.cluster_account_id = s.account_id.clone();
    s
}

fn binding(name: &str, spec: Value) -> IAMRoleBinding {
    serde_json::from_value(json!({
        "apiVersion": "hatrack.dev/v1alpha1", "kind": "IAMRoleBinding",
        "metadata": {"name": name, "namespace": "payments"},
        "spec": spec
    }))
    .unwrap()
}

fn full_spec() -> Value {
    json!({
        "serviceAccounts": ["api", "worker"],
        "trust": {"irsa": {}, "podIdentity": {}},
        "managedPolicyArns": ["arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess"],
        "inlinePolicies": {"put-receipts": {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": ["s3:PutObject"], "Resource": ["arn:aws:s3:::receipts/*"]}]}},
        "permissionsBoundary": "arn:aws:iam::aws:policy/PowerUserAccess",
        "maxSessionDuration": 7200,
        "description": "payments reader",
        "tags": {"team": "payments"}
    })
}

fn desired(name: &str, spec: Value) -> DesiredRole {
    role::desired_role(&binding(name, spec), &settings()).expect("valid spec")
}

fn owner(name: &str) -> Owner {
    Owner {
        cluster_arn: None,
        cluster: settings().cluster_name,
        namespace: "payments".into(),
        name: name.into(),
    }
}

fn writes(outcome: &SyncOutcome) -> Vec<&'static str> {
    match outcome {
        SyncOutcome::Synced { writes, .. } => writes.clone(),
        SyncOutcome::NotOwned => panic!("role unexpectedly not owned"),
    }
}

/// Asserts IAM now holds exactly the desired role.
async fn assert_in_iam(iam: &hatrack::iam::Iam, d: &DesiredRole) {
    let actual = iam
        .get_role(&d.role.role_name)
        .await
        .unwrap()
        .expect("role exists");
    assert_eq!(
        role::diff(Some(&actual), &d.role),
        role::Diff::default(),
        "IAM differs from desired: {actual:#?}"
    );
    assert_eq!(actual.path, "/hatrack/");
    assert_eq!(actual.tags, d.role.tags);
    assert_eq!(actual.managed_policy_arns, d.role.managed_policy_arns);
    assert_eq!(actual.permissions_boundary, d.role.permissions_boundary);
    assert_eq!(actual.max_session_duration, d.role.max_session_duration);
    assert_eq!(actual.description, d.role.description);
}

#[tokio::test]
async fn creates_the_role_with_every_field() {
    let moto = Moto::start();
    let (iam, _) = moto.iam();
    let d = desired("reader", full_spec());
    let out = sync_role(&iam, &d, &owner("reader")).await.unwrap();
    assert_eq!(
        writes(&out),
        ["CreateRole", "PutRolePolicy", "AttachRolePolicy"]
    );
    assert_in_iam(&iam, &d).await;
}

#[tokio::test]
async fn a_resync_of_a_role_in_sync_makes_zero_writes() {
    let moto = Moto::start();
    let (iam, metrics) = moto.iam();
    let d = desired("reader", full_spec());
    sync_role(&iam, &d, &owner("reader")).await.unwrap();
    let writes_before = metrics.iam_write_count();
    let reads_before: u64 = metrics.iam_call_counts().values().sum::<u64>() - writes_before;
    for _ in 0..3 {
        let out = sync_role(&iam, &d, &owner("reader")).await.unwrap();
        assert!(writes(&out).is_empty(), "{out:?}");
    }
    assert_eq!(
        metrics.iam_write_count(),
        writes_before,
        "resync wrote to IAM: {:?}",
        metrics.iam_call_counts()
    );
    let reads_after: u64 =
        metrics.iam_call_counts().values().sum::<u64>() - metrics.iam_write_count();
    // GetRole, ListRolePolicies, GetRolePolicy, ListAttachedRolePolicies per resync.
    assert_eq!(reads_after - reads_before, 3 * 4);
}

#[tokio::test]
async fn every_field_is_updated() {
    let moto = Moto::start();
    let (iam, _) = moto.iam();
    sync_role(&iam, &desired("reader", full_spec()), &owner("reader"))
        .await
        .unwrap();
    let changed = desired(
        "reader",
        json!({
            "serviceAccounts": ["api"],
            "trust": {"irsa": {"audience": "other-audience"}},
            "managedPolicyArns": ["arn:aws:iam::aws:policy/AmazonDynamoDBReadOnlyAccess", "arn:aws:iam::aws:policy/ReadOnlyAccess"],
            "inlinePolicies": {"read-ledger": {"Version": "2012-10-17", "Statement": {"Effect": "Allow", "Action": "dynamodb:GetItem", "Resource": "*"}}},
            "permissionsBoundary": "arn:aws:iam::aws:policy/ReadOnlyAccess",
            "maxSessionDuration": 3600,
            "description": "changed",
            "tags": {"team": "ledger", "cost-center": "42"}
        }),
    );
    let out = sync_role(&iam, &changed, &owner("reader")).await.unwrap();
    assert_eq!(
        writes(&out),
        [
            "UpdateAssumeRolePolicy",
            "UpdateRole",
            "PutRolePermissionsBoundary",
            "TagRole",
            "PutRolePolicy",
            "DeleteRolePolicy",
            "AttachRolePolicy",
            "AttachRolePolicy",
            "DetachRolePolicy",
        ]
    );
    assert_in_iam(&iam, &changed).await;
}

#[tokio::test]
async fn drift_made_out_of_band_is_repaired() {
    let moto = Moto::start();
    let (iam, _) = moto.iam();
    let d = desired("reader", full_spec());
    sync_role(&iam, &d, &owner("reader")).await.unwrap();
    let sdk = moto.sdk_client();
    let role = d.role.role_name.as_str();
    sdk.attach_role_policy()
        .role_name(role)
        .policy_arn("arn:aws:iam::aws:policy/AdministratorAccess")
        .send()
        .await
        .unwrap();
    sdk.update_assume_role_policy().role_name(role)
        .policy_document(json!({"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"*"},"Action":"sts:AssumeRole"}]}).to_string())
        .send().await.unwrap();
    sdk.put_role_policy().role_name(role).policy_name("backdoor")
        .policy_document(json!({"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}).to_string())
        .send().await.unwrap();
    sdk.tag_role()
        .role_name(role)
        .tags(
            aws_sdk_iam::types::Tag::builder()
                .key("hand")
                .value("made")
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let out = sync_role(&iam, &d, &owner("reader")).await.unwrap();
    assert_eq!(
        writes(&out),
        [
            "UpdateAssumeRolePolicy",
            "UntagRole",
            "DeleteRolePolicy",
            "DetachRolePolicy"
        ]
    );
    assert_in_iam(&iam, &d).await;
}

#[tokio::test]
async fn a_role_without_ownership_tags_is_never_modified_or_deleted() {
    let moto = Moto::start();
    let (iam, metrics) = moto.iam();
    let d = desired("reader", full_spec());
    let sdk = moto.sdk_client();
    let foreign_trust = json!({"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"}]});
    sdk.create_role()
        .role_name(&d.role.role_name)
        .assume_role_policy_document(foreign_trust.to_string())
        .send()
        .await
        .unwrap();
    // Tagged for another binding: still not ours.
    sdk.tag_role()
        .role_name(&d.role.role_name)
        .tags(
            aws_sdk_iam::types::Tag::builder()
                .key("hatrack.dev/name")
                .value("someone-else")
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();

    assert_eq!(
        sync_role(&iam, &d, &owner("reader")).await.unwrap(),
        SyncOutcome::NotOwned
    );
    assert_eq!(
        delete_owned_role(&iam, &d.role.role_name, &owner("reader"))
            .await
            .unwrap(),
        CleanupOutcome::NotOwned
    );
    assert_eq!(
        metrics.iam_write_count(),
        0,
        "{:?}",
        metrics.iam_call_counts()
    );
    let actual = iam
        .get_role(&d.role.role_name)
        .await
        .unwrap()
        .expect("role still there");
    assert!(hatrack::policy::equivalent(
        &actual.assume_role_policy,
        &foreign_trust
    ));
}

#[tokio::test]
async fn delete_detaches_and_deletes_policies_first() {
    let moto = Moto::start();
    let (iam, _) = moto.iam();
    let d = desired("reader", full_spec());
    sync_role(&iam, &d, &owner("reader")).await.unwrap();
    // Another policy attached by hand: IAM refuses DeleteRole while any remain.
    moto.sdk_client()
        .attach_role_policy()
        .role_name(&d.role.role_name)
        .policy_arn("arn:aws:iam::aws:policy/ReadOnlyAccess")
        .send()
        .await
        .unwrap();
    assert_eq!(
        delete_owned_role(&iam, &d.role.role_name, &owner("reader"))
            .await
            .unwrap(),
        CleanupOutcome::Deleted
    );
    assert_eq!(iam.get_role(&d.role.role_name).await.unwrap(), None);
    assert_eq!(
        delete_owned_role(&iam, &d.role.role_name, &owner("reader"))
            .await
            .unwrap(),
        CleanupOutcome::AlreadyGone
    );
}

#[tokio::test]
async fn an_instance_profile_holding_the_role_is_reported_not_removed() {
    let moto = Moto::start();
    let (iam, _) = moto.iam();
    let d = desired("reader", full_spec());
    sync_role(&iam, &d, &owner("reader")).await.unwrap();
    let sdk = moto.sdk_client();
    sdk.create_instance_profile()
        .instance_profile_name("foreign-profile")
        .send()
        .await
        .unwrap();
    sdk.add_role_to_instance_profile()
        .instance_profile_name("foreign-profile")
        .role_name(&d.role.role_name)
        .send()
        .await
        .unwrap();
    let out = delete_owned_role(&iam, &d.role.role_name, &owner("reader"))
        .await
        .unwrap();
    assert_eq!(
        out,
        CleanupOutcome::HeldBy(vec!["instance profile foreign-profile".into()])
    );
    assert!(iam.get_role(&d.role.role_name).await.unwrap().is_some());
}

#[tokio::test]
async fn a_role_created_by_an_interrupted_reconcile_is_adopted_not_duplicated() {
    let moto = Moto::start();
    let (iam, _) = moto.iam();
    let d = desired("reader", full_spec());
    // A previous run got as far as CreateRole and died.
    iam.apply(&d.role, &hatrack::role::Change::CreateRole)
        .await
        .unwrap();
    let out = sync_role(&iam, &d, &owner("reader")).await.unwrap();
    assert_eq!(writes(&out), ["PutRolePolicy", "AttachRolePolicy"]);
    assert_in_iam(&iam, &d).await;
    let roles = moto
        .sdk_client()
        .list_roles()
        .path_prefix("/hatrack/")
        .send()
        .await
        .unwrap();
    assert_eq!(roles.roles().len(), 1);
}

#[tokio::test]
async fn oidc_provider_presence_is_detected() {
    let moto = Moto::start();
    let (iam, _) = moto.iam();
    let s = settings();
    let arn = s.oidc_provider_arn().unwrap();
    assert!(!iam.oidc_provider_exists(&arn).await.unwrap());
    moto.create_oidc_provider(&format!(
        "https://{}",
        s.oidc_issuer_host_path.as_deref().unwrap()
    ))
    .await;
    assert!(iam.oidc_provider_exists(&arn).await.unwrap());
}

#[tokio::test]
async fn an_unreachable_iam_is_a_transport_error() {
    let moto = Moto::start();
    let endpoint_gone = moto.endpoint.clone();
    drop(moto);
    let config = aws_sdk_iam::Config::builder()
        .behavior_version_latest()
        .endpoint_url(endpoint_gone)
        .region(aws_sdk_iam::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_iam::config::Credentials::new(
            "testing", "testing", None, None, "static",
        ))
        .http_client(hatrack::iam::http_client())
        .retry_config(aws_sdk_iam::config::retry::RetryConfig::standard().with_max_attempts(1))
        .build();
    let iam = hatrack::iam::Iam::new(
        aws_sdk_iam::Client::from_conf(config),
        100,
        Default::default(),
    );
    let err = iam.get_role("x").await.unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    assert_eq!(err.label(), "transport");
}
