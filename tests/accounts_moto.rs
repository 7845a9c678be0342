//! Roles in other accounts against a real moto server (IAM and STS), through the real
//! aws-sdk-iam and aws-sdk-sts over HTTP: credentials from `sts:AssumeRole` into a role of
//! another account act in that account, which is what the controller's account clients rely on.

use hatrack_test_support as support;

use hatrack::crd::IAMRoleBinding;
use hatrack::iam::AssumeRoleTarget;
use hatrack::role;
use hatrack::settings::Settings;
use hatrack::sync::{Owner, SyncOutcome, sync_role};
use serde_json::json;
use support::moto::Moto;

const HOME: &str = "123456789012";
const OTHER: &str = "222222222222";

fn target(account: &str) -> AssumeRoleTarget {
    AssumeRoleTarget {
        role_arn: format!("arn:aws:iam::{account}:role/hatrack-operator"),
        external_id: Some("cluster-prod".into()),
        session_name: "hatrack-test".into(),
    }
}

#[tokio::test]
async fn assumed_role_credentials_act_in_the_other_account() {
    let moto = Moto::start();
    let config = moto.shared_config();
    let sts = aws_sdk_sts::Client::new(&config);
    let me = sts.get_caller_identity().send().await.unwrap();
    assert_eq!(me.account(), Some(HOME));

    let assumed = sts
        .assume_role()
        .role_arn(format!("arn:aws:iam::{OTHER}:role/hatrack-operator"))
        .role_session_name("probe")
        .external_id("cluster-prod")
        .send()
        .await
        .unwrap();
    let c = assumed.credentials().unwrap();
    let creds = aws_credential_types::Credentials::new(
        c.access_key_id(),
        c.secret_access_key(),
        Some(c.session_token().to_string()),
        None,
        "assumed",
    );
    let other_config = config
        .to_builder()
        .credentials_provider(aws_credential_types::provider::SharedCredentialsProvider::new(creds))
        .build();
    let other_sts = aws_sdk_sts::Client::new(&other_config);
    let them = other_sts.get_caller_identity().send().await.unwrap();
    assert_eq!(them.account(), Some(OTHER));

    let other_iam = aws_sdk_iam::Client::new(&other_config);
    let made = other_iam
        .create_role()
        .role_name("probe")
        .assume_role_policy_document(r#"{"Version":"2012-10-17","Statement":[]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(
        made.role().unwrap().arn(),
        format!("arn:aws:iam::{OTHER}:role/probe")
    );
    // Absent from the home account.
    let home_iam = aws_sdk_iam::Client::new(&config);
    let err = home_iam
        .get_role()
        .role_name("probe")
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        aws_sdk_iam::error::ProvideErrorMetadata::code(&err),
        Some("NoSuchEntity")
    );
}

#[tokio::test]
async fn hatrack_account_clients_make_roles_in_their_account_only() {
    let moto = Moto::start();
    let (home, metrics) = moto.iam();
    let other = home
        .assume_role(&target(OTHER), 1000)
        .await
        .expect("a client built from an SDK configuration can assume roles");

    let mut settings = Settings::example();
    settings.account_id = OTHER.into();
    let binding: IAMRoleBinding = serde_json::from_value(json!({
        "apiVersion": "hatrack.dev/v1alpha1", "kind": "IAMRoleBinding",
        "metadata": {"name": "reader", "namespace": "payments"},
        "spec": {"serviceAccounts": ["api"], "account": "other"}
    }))
    .unwrap();
    let desired = role::desired_role(&binding, &settings).unwrap();
    assert!(
        desired
            .role
            .arn
            .starts_with(&format!("arn:aws:iam::{OTHER}:"))
    );
    let owner = Owner {
        cluster: settings.cluster_name.clone(),
        cluster_arn: settings.cluster_arn(),
        namespace: "payments".into(),
        name: "reader".into(),
    };
    let outcome = sync_role(&other, &desired, &owner).await.unwrap();
    assert!(matches!(outcome, SyncOutcome::Synced { created: true, .. }));
    let actual = other
        .get_role(&desired.role.role_name)
        .await
        .unwrap()
        .expect("role in the other account");
    assert_eq!(actual.arn, desired.role.arn);
    assert!(
        home.get_role(&desired.role.role_name)
            .await
            .unwrap()
            .is_none()
    );
    // Calls of both clients are counted in the same metrics.
    assert!(
        metrics
            .iam_call_counts()
            .contains_key(&("CreateRole".into(), "success".into()))
    );

    // A client made by hand (no SDK configuration) cannot reach other accounts.
    let bare = hatrack::iam::Iam::new(moto.sdk_client(), 10, metrics);
    assert!(bare.assume_role(&target(OTHER), 10).await.is_none());
}
