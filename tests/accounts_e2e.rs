//! Roles in other accounts and orphaned roles, end to end: the controller in-process against
//! the real kube-apiserver (tests/support/cluster.rs) and a real moto server serving IAM and
//! STS for several accounts (assumed-role credentials act in the role's account).

use hatrack_test_support as support;

use std::time::Duration;

use hatrack::controller::orphans::SweepOptions;
use hatrack::crd::IAMRoleBinding;
use kube::api::{Api, Patch, PatchParams};
use serde_json::{Value, json};
use support::controller::*;
use support::moto::Moto;
use support::objects;

const OTHER: &str = "222222222222";

/// An IAMAccount for `account_id` selecting namespaces labelled `hatrack-test/account=<label>`.
async fn create_account(client: &kube::Client, name: &str, account_id: &str, label: &str) {
    let selector = json!({"matchLabels": {"hatrack-test/account": label}});
    objects::create_account(client, name, account_id, Some("hatrack-e2e"), selector).await;
}

async fn label_namespace(client: &kube::Client, ns: &str, label: &str) {
    objects::label_namespace(client, ns, json!({"hatrack-test/account": label})).await;
}

async fn create_oidc_provider_in(moto: &Moto, account: &str) {
    moto.create_oidc_provider_in(account, &format!("https://{ISSUER_HOST_PATH}"))
        .await;
}

fn trust_of(role: &aws_sdk_iam::types::Role) -> Value {
    hatrack::policy::decode_document(role.assume_role_policy_document().unwrap()).unwrap()
}

#[tokio::test]
async fn a_binding_in_account_b_gets_its_role_there_with_b_trust_and_none_in_a() {
    let t = TestNamespace::new("acct-b").await;
    let (client, ns, moto) = (&t.client, &t.ns, &t.moto);
    let acct = format!("{ns}-b");
    label_namespace(client, ns, ns).await;
    create_account(client, &acct, OTHER, ns).await;
    create_service_account(client, ns, "api").await;
    // IRSA in B needs the cluster's OIDC provider in B; A has one, B not yet.
    let controller = t.controller().start();

    create_binding(
        client,
        ns,
        "reader",
        json!({"serviceAccounts": ["api"], "account": acct,
               "managedPolicyArns": ["arn:aws:iam::aws:policy/ReadOnlyAccess"]}),
    )
    .await;
    let b = wait_ready_reason(client, ns, "reader", "OidcProviderMissing", 60).await;
    let (_, _, message) = ready(&b).unwrap();
    assert!(
        message.contains(&format!("arn:aws:iam::{OTHER}:oidc-provider/")),
        "{message}"
    );

    create_oidc_provider_in(moto, OTHER).await;
    // The binding waits for a change or its retry; an edit brings it back at once.
    support::controller::patch_spec(client, ns, "reader", json!({"description": "in B"})).await;
    let b = wait_ready_reason(client, ns, "reader", "Synced", 60).await;
    let status = b.status.clone().unwrap();
    let role_name = status.role_name.clone().unwrap();
    let arn = status.role_arn.clone().unwrap();
    assert!(
        arn.starts_with(&format!("arn:aws:iam::{OTHER}:role/hatrack/")),
        "{arn}"
    );

    let in_b = moto.sdk_client_in(OTHER).await;
    let role = in_b.get_role().role_name(&role_name).send().await.unwrap();
    let role = role.role().unwrap();
    assert_eq!(role.arn(), arn);
    let trust = trust_of(role);
    assert_eq!(
        trust["Statement"][0]["Principal"]["Federated"],
        json!(format!(
            "arn:aws:iam::{OTHER}:oidc-provider/{ISSUER_HOST_PATH}"
        ))
    );
    assert_eq!(
        trust["Statement"][0]["Condition"]["StringEquals"][format!("{ISSUER_HOST_PATH}:sub")],
        json!(format!("system:serviceaccount:{ns}:api"))
    );
    let attached = in_b
        .list_attached_role_policies()
        .role_name(&role_name)
        .send()
        .await
        .unwrap();
    assert_eq!(attached.attached_policies().len(), 1);
    assert!(
        hatrack_roles(moto).await.is_empty(),
        "no role in the controller's account"
    );
    assert_eq!(
        role_arn_annotation(client, ns, "api").await,
        Some(arn.clone())
    );

    delete_binding(client, ns, "reader").await;
    wait_binding_gone(client, ns, "reader", 60).await;
    assert!(
        moto.roles_in(OTHER, "/hatrack/").await.is_empty(),
        "role in B deleted"
    );
    assert_eq!(role_arn_annotation(client, ns, "api").await, None);
    controller.stop().await;
}

#[tokio::test]
async fn a_namespace_the_account_does_not_select_is_refused_and_nothing_is_made() {
    let t = TestNamespace::without_oidc_provider("acct-refused").await;
    let (client, ns, moto) = (&t.client, &t.ns, &t.moto);
    let acct = format!("{ns}-b");
    // The account selects another label value than this namespace has.
    label_namespace(client, ns, "someone-else").await;
    create_account(client, &acct, OTHER, &format!("{ns}-allowed")).await;
    create_oidc_provider_in(moto, OTHER).await;
    let controller = t.controller().start();

    create_binding(
        client,
        ns,
        "denied",
        json!({"serviceAccounts": ["api"], "account": acct}),
    )
    .await;
    let b = wait_ready_reason(client, ns, "denied", "AccountNotAllowed", 60).await;
    let (status, _, message) = ready(&b).unwrap();
    assert_eq!(status, "False");
    assert!(
        message.contains(ns.as_str()) && message.contains(OTHER),
        "{message}"
    );

    create_binding(
        client,
        ns,
        "nowhere",
        json!({"serviceAccounts": ["web"], "account": "no-such-account"}),
    )
    .await;
    wait_ready_reason(client, ns, "nowhere", "AccountUnavailable", 60).await;

    // Once the namespace is selected, the same binding is made (the namespace watch re-queues it).
    label_namespace(client, ns, &format!("{ns}-allowed")).await;
    wait_ready_reason(client, ns, "denied", "Synced", 60).await;

    // Pod Identity in another account, from a controller that does not manage associations
    // (the chain needs one): refused whole, never half-made.
    create_binding(
        client,
        ns,
        "pod-identity",
        json!({"serviceAccounts": ["worker"], "account": acct, "trust": {"podIdentity": {}}}),
    )
    .await;
    let b = wait_ready_reason(client, ns, "pod-identity", "AccountUnsupported", 60).await;
    assert!(ready(&b).unwrap().2.contains("targetRoleArn"));
    let in_b = moto.roles_in(OTHER, "/hatrack/").await;
    assert_eq!(
        in_b.len(),
        1,
        "only the allowed IRSA binding's role: {in_b:?}"
    );
    assert!(hatrack_roles(moto).await.is_empty());

    // spec.account cannot be changed (the API server's CEL rule).
    let api: Api<IAMRoleBinding> = Api::namespaced(client.clone(), ns);
    let err = api
        .patch(
            "denied",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"account": "other"}})),
        )
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("account cannot be changed"),
        "{err}"
    );
    controller.stop().await;
}

/// Polls `check` until it answers or `secs` pass; `None` on time-out, so the caller can say
/// what it last saw.
async fn wait_for_or_last<T, F, Fut>(secs: u64, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while tokio::time::Instant::now() < deadline {
        if let Some(v) = check().await {
            return Some(v);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

#[tokio::test]
async fn orphaned_roles_are_reported_listed_and_deleted_only_when_configured() {
    let t = TestNamespace::new("orphans").await;
    let (client, ns, moto) = (&t.client, &t.ns, &t.moto);
    let acct = format!("{ns}-b");
    label_namespace(client, ns, ns).await;
    create_account(client, &acct, OTHER, ns).await;
    create_oidc_provider_in(moto, OTHER).await;

    let syncing = t.controller().start();
    for (name, spec) in [
        ("kept", json!({"serviceAccounts": ["a"]})),
        ("lost-home", json!({"serviceAccounts": ["b"]})),
        ("lost-b", json!({"serviceAccounts": ["c"], "account": acct})),
        (
            "retained",
            json!({"serviceAccounts": ["d"], "deletionPolicy": "Retain"}),
        ),
    ] {
        create_binding(client, ns, name, spec).await;
        wait_ready_reason(client, ns, name, "Synced", 60).await;
    }
    // A retained role is left behind on purpose: not an orphan.
    delete_binding(client, ns, "retained").await;
    wait_binding_gone(client, ns, "retained", 60).await;
    syncing.stop().await;
    // Lost without their cleanup, while no controller runs (see `delete_by_force`).
    delete_by_force(client, ns, "lost-home").await;
    delete_by_force(client, ns, "lost-b").await;

    // Then a controller that only reports.
    let reporting = t
        .controller()
        .sweeping(SweepOptions {
            interval: Duration::from_millis(500),
            delete: false,
        })
        .start();
    let mut last = None;
    let found = wait_for_or_last(60, || {
        let seen = metric(&reporting.metrics.encode(), "hatrack_orphaned_roles");
        last = seen;
        async move { (seen == Some(2.0)).then_some(()) }
    })
    .await;
    assert!(
        found.is_some(),
        "two orphans reported: hatrack_orphaned_roles was {last:?}"
    );
    // Reported for a few sweeps, deleted by none.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        hatrack_roles(moto).await.len(),
        3,
        "kept, lost-home, retained"
    );
    assert_eq!(moto.roles_in(OTHER, "/hatrack/").await.len(), 1);
    assert_eq!(
        metric(
            &reporting.metrics.encode(),
            "hatrack_orphaned_roles_deleted_total"
        ),
        Some(0.0)
    );
    reporting.stop().await;

    // `hatrack orphans` lists the same two, from the kubeconfig and AWS credentials.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hatrack"))
        .args([
            "orphans",
            "--cluster-name",
            &support::controller::settings().cluster_name,
            "--cluster-region",
            support::controller::REGION,
        ])
        .args([
            "--account-id",
            ACCOUNT,
            "--namespace",
            ns,
            "--output",
            "json",
            // No EKS here: roles only.
            "--pod-identity-associations=false",
        ])
        .env("KUBECONFIG", &t.cluster.kubeconfig)
        .env("HATRACK_IAM_ENDPOINT", &moto.endpoint)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env_remove("AWS_PROFILE")
        .output()
        .expect("run hatrack orphans");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed: Vec<Value> = serde_json::from_slice(&out.stdout).expect("JSON list");
    let mut found: Vec<(String, String)> = listed
        .iter()
        .map(|o| {
            (
                o["accountId"].as_str().unwrap().to_string(),
                o["binding"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    found.sort();
    assert_eq!(
        found,
        vec![
            (ACCOUNT.to_string(), "lost-home".to_string()),
            (OTHER.to_string(), "lost-b".to_string())
        ]
    );

    // Then one configured to delete: both orphans go, in both accounts; the rest stays.
    let deleting = t
        .controller()
        .sweeping(SweepOptions {
            interval: Duration::from_millis(500),
            delete: true,
        })
        .start();
    wait_for(60, "orphans deleted", || async {
        (moto.roles_in(OTHER, "/hatrack/").await.is_empty() && hatrack_roles(moto).await.len() == 2)
            .then_some(())
    })
    .await;
    assert_eq!(
        metric(
            &deleting.metrics.encode(),
            "hatrack_orphaned_roles_deleted_total"
        ),
        Some(2.0)
    );
    let kept = get_binding(client, ns, "kept").await.expect("kept binding");
    let role = kept.status.unwrap().role_name.unwrap();
    assert!(
        hatrack_roles(moto).await.contains(&role),
        "a live binding's role is never an orphan"
    );
    deleting.stop().await;
}

#[tokio::test]
async fn adoption_is_refused_without_a_guardrail_allowance_and_done_with_one() {
    let t = TestNamespace::new("adopt").await;
    let (client, ns, moto) = (&t.client, &t.ns, &t.moto);
    label_namespace(client, ns, ns).await;
    create_service_account(client, ns, "api").await;
    // A role made by hand (Terraform, say): its own path, trust, policy and tag.
    let iam = moto.sdk_client();
    let legacy = "legacy-payments";
    iam.create_role()
        .role_name(legacy)
        .path("/legacy/")
        .assume_role_policy_document(r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#)
        .tags(aws_sdk_iam::types::Tag::builder().key("owner").value("terraform").build().unwrap())
        .send()
        .await
        .unwrap();
    iam.put_role_policy()
        .role_name(legacy)
        .policy_name("old")
        .policy_document(r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*"}]}"#)
        .send()
        .await
        .unwrap();
    let controller = t.controller().start();

    create_binding(
        client,
        ns,
        "payments",
        json!({"serviceAccounts": ["api"], "adoptRole": legacy,
               "inlinePolicies": {"read": {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}]}}}),
    )
    .await;
    let b = wait_ready_reason(client, ns, "payments", "AdoptionNotAllowed", 60).await;
    assert!(ready(&b).unwrap().2.contains("adoptableRoles"));
    let untouched = iam.get_role().role_name(legacy).send().await.unwrap();
    let untouched = untouched.role().unwrap();
    assert!(
        untouched
            .tags()
            .iter()
            .all(|t| !t.key().starts_with("hatrack.dev/")),
        "refused adoption wrote nothing"
    );

    // A guardrail for this namespace allowing roles under /legacy/.
    objects::create_guardrail(
        client,
        ns,
        json!({"namespaceSelector": {"matchLabels": {"hatrack-test/account": ns}},
               "adoptableRoles": ["/legacy/*"]}),
    )
    .await;
    let b = wait_ready_reason(client, ns, "payments", "Synced", 60).await;
    let status = b.status.clone().unwrap();
    let arn = format!("arn:aws:iam::{ACCOUNT}:role/legacy/{legacy}");
    assert_eq!(status.role_arn.as_deref(), Some(arn.as_str()));
    assert_eq!(status.role_name.as_deref(), Some(legacy));
    let adopted = iam.get_role().role_name(legacy).send().await.unwrap();
    let adopted = adopted.role().unwrap();
    let tags: std::collections::BTreeMap<_, _> = adopted
        .tags()
        .iter()
        .map(|t| (t.key().to_string(), t.value().to_string()))
        .collect();
    assert_eq!(tags.get("hatrack.dev/namespace"), Some(ns));
    assert_eq!(
        tags.get("hatrack.dev/name").map(String::as_str),
        Some("payments")
    );
    assert_eq!(
        tags.get("hatrack.dev/adopted").map(String::as_str),
        Some("true")
    );
    assert!(
        !tags.contains_key("owner"),
        "the binding's tags replace the role's"
    );
    let trust = trust_of(adopted);
    assert_eq!(
        trust["Statement"][0]["Action"],
        json!("sts:AssumeRoleWithWebIdentity"),
        "the binding's trust: {trust}"
    );
    assert_eq!(trust["Statement"].as_array().unwrap().len(), 1);
    let inline = iam
        .list_role_policies()
        .role_name(legacy)
        .send()
        .await
        .unwrap();
    assert_eq!(inline.policy_names(), ["read"]);
    assert_eq!(
        role_arn_annotation(client, ns, "api").await,
        Some(arn.clone())
    );
    assert!(
        hatrack_roles(moto).await.is_empty(),
        "no role of hatrack's own"
    );

    // Deleted: the adopted role is kept (and marked retained), the annotation goes.
    delete_binding(client, ns, "payments").await;
    wait_binding_gone(client, ns, "payments", 60).await;
    let kept = iam.get_role().role_name(legacy).send().await.unwrap();
    assert!(
        kept.role()
            .unwrap()
            .tags()
            .iter()
            .any(|t| t.key() == "hatrack.dev/retained"),
        "kept and marked retained"
    );
    assert_eq!(role_arn_annotation(client, ns, "api").await, None);
    let guardrails: Api<hatrack::crd::IAMGuardrail> = Api::all(client.clone());
    guardrails
        .delete(ns, &Default::default())
        .await
        .expect("delete guardrail");
    controller.stop().await;
}

#[tokio::test]
async fn pod_identity_in_account_b_chains_from_a_role_in_the_clusters_account() {
    let t = TestNamespace::without_oidc_provider("acct-chain").await;
    let (client, ns, moto) = (&t.client, &t.ns, &t.moto);
    let acct = format!("{ns}-b");
    label_namespace(client, ns, ns).await;
    create_account(client, &acct, OTHER, ns).await;
    let eks = eks_for_test_cluster().await;
    let controller = t.controller().eks(&eks).start();
    create_binding(
        client,
        ns,
        "app",
        json!({"serviceAccounts": ["api", "worker"], "account": acct,
               "trust": {"podIdentity": {}},
               "managedPolicyArns": ["arn:aws:iam::aws:policy/ReadOnlyAccess"]}),
    )
    .await;
    let b = wait_ready_reason(client, ns, "app", "Synced", 60).await;
    let status = b.status.clone().unwrap();
    let role_name = status.role_name.clone().unwrap();
    let target_arn = status.role_arn.clone().unwrap();
    assert!(
        target_arn.starts_with(&format!("arn:aws:iam::{OTHER}:role/hatrack/")),
        "{target_arn}"
    );
    let chaining_arn = format!("arn:aws:iam::{ACCOUNT}:role/hatrack/{role_name}");

    // One association per ServiceAccount: the chaining role, on to the target role, each with
    // the external id EKS made; status records both.
    let made = support::controller::associations_in(&eks, ns);
    assert_eq!(made.keys().collect::<Vec<_>>(), ["api", "worker"]);
    let mut ids = Vec::new();
    for a in made.values() {
        assert_eq!(a.role_arn, chaining_arn);
        assert_eq!(a.target_role_arn.as_deref(), Some(target_arn.as_str()));
        ids.push(a.external_id.clone().expect("an external id"));
    }
    ids.sort();
    let recorded: Vec<(String, Option<String>, Option<String>)> = status
        .pod_identity_associations
        .iter()
        .map(|a| {
            (
                a.service_account.clone(),
                a.target_role_arn.clone(),
                a.external_id.clone(),
            )
        })
        .collect();
    let expected: Vec<(String, Option<String>, Option<String>)> = made
        .values()
        .map(|a| {
            (
                a.service_account.clone(),
                Some(target_arn.clone()),
                a.external_id.clone(),
            )
        })
        .collect();
    assert_eq!(recorded, expected);

    // Boxed: the test's own future stays small (the controller's tasks share this thread).
    Box::pin(assert_chained_roles(
        moto,
        ns,
        &role_name,
        &chaining_arn,
        &target_arn,
        &ids,
    ))
    .await;
    let in_b = moto.sdk_client_in(OTHER).await;

    // A ServiceAccount leaves: its association goes, and its external id from the trust.
    let worker_id = made["worker"].external_id.clone().unwrap();
    support::controller::patch_spec(client, ns, "app", json!({"serviceAccounts": ["api"]})).await;
    wait_for(60, "worker's association and external id gone", || async {
        let role = in_b.get_role().role_name(&role_name).send().await.ok()?;
        let trust = trust_of(role.role()?);
        (!support::controller::associations_in(&eks, ns).contains_key("worker")
            && trust["Statement"][0]["Condition"]["StringEquals"]["sts:ExternalId"]
                == json!(made["api"].external_id.clone().unwrap()))
        .then_some(())
    })
    .await;
    assert_ne!(made["api"].external_id, Some(worker_id));

    // Delete: associations, then both roles, gone.
    delete_binding(client, ns, "app").await;
    wait_binding_gone(client, ns, "app", 60).await;
    assert!(support::controller::associations_in(&eks, ns).is_empty());
    assert!(moto.roles_in(OTHER, "/hatrack/").await.is_empty());
    assert!(hatrack_roles(moto).await.is_empty());
    controller.stop().await;
}

/// The target role in B and the chaining role in A of a chained binding `app` of `ns`.
async fn assert_chained_roles(
    moto: &Moto,
    ns: &str,
    role_name: &str,
    chaining_arn: &str,
    target_arn: &str,
    ids: &[String],
) {
    // The target role in B trusts only the chaining role, only with those external ids; it
    // has the binding's policies.
    let in_b = moto.sdk_client_in(OTHER).await;
    let role = in_b.get_role().role_name(role_name).send().await.unwrap();
    let trust = trust_of(role.role().unwrap());
    let statements = trust["Statement"].as_array().unwrap();
    assert_eq!(statements.len(), 1, "{trust}");
    assert_eq!(statements[0]["Effect"], "Allow");
    assert_eq!(statements[0]["Principal"]["AWS"], json!(chaining_arn));
    assert_eq!(
        statements[0]["Condition"]["StringEquals"]["sts:ExternalId"],
        json!(ids)
    );
    let attached = in_b
        .list_attached_role_policies()
        .role_name(role_name)
        .send()
        .await
        .unwrap();
    assert_eq!(attached.attached_policies().len(), 1);

    // The chaining role in A: trusted by EKS Pod Identity for this namespace's ServiceAccounts,
    // allowed only to assume the target role; tagged as the binding's.
    let in_a = moto.sdk_client();
    let chaining = in_a.get_role().role_name(role_name).send().await.unwrap();
    let chaining = chaining.role().unwrap();
    assert_eq!(chaining.arn(), chaining_arn);
    let trust = trust_of(chaining);
    assert_eq!(
        trust["Statement"][0]["Principal"]["Service"],
        "pods.eks.amazonaws.com"
    );
    assert_eq!(
        trust["Statement"][0]["Condition"]["StringEquals"]["aws:RequestTag/kubernetes-namespace"],
        json!(ns)
    );
    let policy = in_a
        .get_role_policy()
        .role_name(role_name)
        .policy_name(hatrack::association::chain::CHAIN_POLICY)
        .send()
        .await
        .unwrap();
    let policy = hatrack::policy::decode_document(policy.policy_document()).unwrap();
    assert_eq!(policy["Statement"][0]["Resource"], json!(target_arn));
    assert_eq!(
        policy["Statement"][0]["Action"],
        json!(["sts:AssumeRole", "sts:TagSession"])
    );
    let attached_a = in_a
        .list_attached_role_policies()
        .role_name(role_name)
        .send()
        .await
        .unwrap();
    assert!(
        attached_a.attached_policies().is_empty(),
        "the binding's grants are the target role's only"
    );
    let tags: std::collections::BTreeMap<String, String> = chaining
        .tags()
        .iter()
        .map(|t| (t.key().to_string(), t.value().to_string()))
        .collect();
    assert!(hatrack::naming::is_owned_by(
        &tags,
        &support::controller::settings().cluster_name,
        ns,
        "app"
    ));
}
