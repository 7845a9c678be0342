//! IAMAccount status on the real API server: the controller says whether it obtains
//! credentials in the account (`sts:AssumeRole` against a real moto STS), and why not (STS
//! unreachable; STS refusing, from a stand-in, since moto's STS grants every AssumeRole).
//! Its own test binary (its own API server): a controller that cannot reach STS writes every
//! IAMAccount's status, which would fight the controllers of other tests over theirs.

use hatrack_test_support as support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use hatrack::crd::IAMAccount;
use hatrack::metrics::Metrics;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use support::cluster::cluster_with_crds;
use support::controller::{RunningController, wait_for};
use support::moto::{Moto, free_port};

/// The Ready condition's (status, reason, message) and observedGeneration, once the status
/// is about the account's current generation.
async fn ready_of(api: &Api<IAMAccount>, name: &str) -> Option<(String, String, String)> {
    let a = api.get(name).await.ok()?;
    let st = a.status?;
    if st.observed_generation != a.metadata.generation {
        return None;
    }
    let c = st.conditions.into_iter().find(|c| c.type_ == "Ready")?;
    Some((c.status, c.reason, c.message))
}

/// STS answering every call as it answers an AssumeRole into a role that does not trust the
/// caller: 403 AccessDenied, with a new request id each time (moto's STS grants every
/// AssumeRole). Its URL and the count of calls.
async fn sts_denying_assume_role() -> (String, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let app = axum::Router::new().fallback(move || {
        let n = counted.fetch_add(1, Ordering::SeqCst);
        async move {
            let body = format!(
                r#"<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type><Code>AccessDenied</Code><Message>User: arn:aws:sts::111111111111:assumed-role/hatrack/x is not authorized to perform: sts:AssumeRole on resource: arn:aws:iam::222222222222:role/hatrack-operator</Message></Error><RequestId>denied-request-{n}</RequestId></ErrorResponse>"#
            );
            (
                axum::http::StatusCode::FORBIDDEN,
                [
                    ("content-type", "text/xml".to_string()),
                    ("x-amzn-requestid", format!("denied-request-{n}")),
                ],
                body,
            )
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, calls)
}

#[tokio::test]
async fn an_iam_account_says_whether_the_controller_obtains_credentials_there() {
    let cluster = cluster_with_crds().await;
    let client = cluster.client().await;
    let moto = Moto::start();
    let ns = cluster.namespace("acct-status").await;
    let api: Api<IAMAccount> = Api::all(client.clone());
    let name = format!("{ns}-b");
    let account: IAMAccount = serde_json::from_value(json!({
        "apiVersion": "hatrack.dev/v1alpha1", "kind": "IAMAccount",
        "metadata": {"name": name},
        "spec": {"accountId": "222222222222",
                 "assumeRole": {"roleArn": "arn:aws:iam::222222222222:role/hatrack-operator",
                                "externalId": "hatrack-e2e"},
                 "namespaceSelector": {}}
    }))
    .unwrap();
    api.create(&PostParams::default(), &account).await.unwrap();

    // A controller whose STS (and IAM) is a port nothing listens on: AssumeRole fails, and
    // the status says so, with the role and the SDK's reason.
    // A controller of this namespace whose AWS endpoints (STS among them) are at `url`.
    let controller_with_aws_at = |url: String| {
        let config = moto.shared_config().to_builder().endpoint_url(url).build();
        let metrics = Arc::new(Metrics::default());
        let iam = hatrack::iam::Iam::from_sdk_config(&config, 1000, metrics.clone());
        RunningController::builder_with_iam(client.clone(), iam, metrics)
            .namespace(&ns)
            .start()
    };
    let failing = controller_with_aws_at(format!("http://127.0.0.1:{}", free_port()));
    let (status, _, message) = wait_for(60, "Ready=False AssumeRoleFailed", || async {
        ready_of(&api, &name)
            .await
            .filter(|r| r.1 == "AssumeRoleFailed")
    })
    .await;
    assert_eq!(status, "False");
    assert!(
        message.contains("arn:aws:iam::222222222222:role/hatrack-operator"),
        "{message}"
    );
    failing.stop().await;

    // STS refuses: the status names STS's code and message, without the request id that is
    // new on every call, and the account is not checked again before its retry timer (60 s
    // here) — its own status write does not make it a new check.
    let (sts, calls) = sts_denying_assume_role().await;
    let denied = controller_with_aws_at(sts);
    let (_, _, message) = wait_for(60, "Ready=False with STS's AccessDenied", || async {
        ready_of(&api, &name)
            .await
            .filter(|r| r.1 == "AssumeRoleFailed" && r.2.contains("AccessDenied"))
    })
    .await;
    assert!(
        message.contains(
            "AccessDenied: User: arn:aws:sts::111111111111:assumed-role/hatrack/x is not authorized"
        ) && !message.contains("denied-request-"),
        "{message}"
    );
    let seen = calls.load(Ordering::SeqCst);
    tokio::time::sleep(std::time::Duration::from_secs(4)).await;
    assert_eq!(
        (seen, calls.load(Ordering::SeqCst)),
        (1, 1),
        "AssumeRole calls when Ready=False was seen and 4 s later"
    );
    denied.stop().await;

    // The same account with a working STS: credentials obtained, Ready=True.
    let working = RunningController::builder(client.clone(), &moto)
        .namespace(&ns)
        .start();
    let (status, _, message) = wait_for(60, "Ready=True CredentialsObtained", || async {
        ready_of(&api, &name)
            .await
            .filter(|r| r.1 == "CredentialsObtained")
    })
    .await;
    assert_eq!(status, "True");
    assert!(message.contains("222222222222"), "{message}");
    let a = api.get(&name).await.unwrap();
    assert!(
        !a.status
            .unwrap()
            .conditions
            .iter()
            .any(|c| c.type_ == "Stalled"),
        "no Stalled while Ready"
    );

    // A spec change is checked again: observedGeneration follows the generation.
    api.patch(
        &name,
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"iamCallsPerSecond": 5}})),
    )
    .await
    .unwrap();
    let generation = api.get(&name).await.unwrap().metadata.generation;
    assert_eq!(generation, Some(2));
    wait_for(60, "status of generation 2", || async {
        let a = api.get(&name).await.ok()?;
        (a.status?.observed_generation == Some(2)).then_some(())
    })
    .await;
    assert_eq!(
        ready_of(&api, &name).await.map(|r| r.1),
        Some("CredentialsObtained".to_string())
    );
    working.stop().await;
}
