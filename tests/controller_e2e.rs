//! The real kube-runtime Controller, end to end: the real test API server (CRDs installed,
//! one fresh namespace per test), a real moto IAM server, and hatrack's controller running
//! in-process between them, watching that namespace.

use hatrack_test_support as support;

use std::time::Duration;

use k8s_openapi::api::events::v1::Event;
use serde_json::json;
use support::cluster::cluster_with_crds;
use support::controller::*;
use support::moto::Moto;
use support::objects::{create_guardrail_for, label_namespace};

#[tokio::test]
async fn apply_edit_drift_and_delete() {
    let t = TestNamespace::new("e2e").await;
    let (client, ns, moto) = (&t.client, t.ns.as_str(), &t.moto);
    let controller = t.controller().resync(Duration::from_secs(2)).start();
    create_service_account(client, ns, "api").await;
    create_binding(client, ns, "reader", json!({
        "serviceAccounts": ["api", "worker"],
        "managedPolicyArns": ["arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess"],
        "inlinePolicies": {"put-receipts": {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:PutObject", "Resource": "arn:aws:s3:::receipts/*"}]}}
    }))
    .await;

    // apply → role, status Ready, finalizer, SA annotated
    let b = wait_ready_reason(client, ns, "reader", "Synced", 20).await;
    let status = b.status.clone().unwrap();
    let name = role_name(ns, "reader");
    let arn = format!("arn:aws:iam::{ACCOUNT}:role/hatrack/{name}");
    assert_eq!(status.role_name.as_deref(), Some(name.as_str()));
    assert_eq!(status.role_arn.as_deref(), Some(arn.as_str()));
    assert_eq!(status.observed_generation, Some(1));
    assert!(status.last_sync_time.is_some());
    assert_eq!(
        b.metadata.finalizers.clone().unwrap_or_default(),
        vec![hatrack::controller::FINALIZER.to_string()]
    );
    assert_eq!(hatrack_roles(moto).await, vec![name.clone()]);
    let (iam, _) = moto.iam();
    let actual = iam.get_role(&name).await.unwrap().unwrap();
    assert_eq!(actual.managed_policy_arns.len(), 1);
    assert_eq!(actual.inline_policies.len(), 1);
    wait_role_arn_annotation(client, ns, "api", &arn, 30).await;

    // a bound ServiceAccount that appears later is annotated then
    create_service_account(client, ns, "worker").await;
    wait_role_arn_annotation(client, ns, "worker", &arn, 30).await;

    // edit → role updated, observedGeneration advances
    patch_spec(client, ns, "reader", json!({"managedPolicyArns": ["arn:aws:iam::aws:policy/ReadOnlyAccess"], "description": "edited"})).await;
    let b = wait_ready_reason(client, ns, "reader", "Synced", 20).await;
    assert_eq!(b.status.as_ref().unwrap().observed_generation, Some(2));
    let actual = iam.get_role(&name).await.unwrap().unwrap();
    assert_eq!(actual.description, "edited");
    assert_eq!(
        actual.managed_policy_arns.iter().collect::<Vec<_>>(),
        ["arn:aws:iam::aws:policy/ReadOnlyAccess"]
    );

    // drift made by hand → repaired at the next resync, with an Event the server accepted
    moto.sdk_client()
        .attach_role_policy()
        .role_name(&name)
        .policy_arn("arn:aws:iam::aws:policy/AdministratorAccess")
        .send()
        .await
        .unwrap();
    wait_for(20, "AdministratorAccess detached", || async {
        let a = iam.get_role(&name).await.unwrap().unwrap();
        (!a.managed_policy_arns
            .contains("arn:aws:iam::aws:policy/AdministratorAccess"))
        .then_some(())
    })
    .await;
    let events: kube::Api<Event> = kube::Api::namespaced(client.clone(), ns);
    let event = wait_for(30, "DriftCorrected event", || async {
        events
            .list(&Default::default())
            .await
            .expect("list events")
            .items
            .into_iter()
            .find(|e| e.reason.as_deref() == Some("DriftCorrected"))
    })
    .await;
    assert_eq!(
        event.regarding.as_ref().and_then(|r| r.name.as_deref()),
        Some("reader")
    );
    assert_eq!(event.type_.as_deref(), Some("Normal"));

    // delete → role gone, finalizer removed, annotations removed
    delete_binding(client, ns, "reader").await;
    wait_binding_gone(client, ns, "reader", 20).await;
    assert!(hatrack_roles(moto).await.is_empty());
    assert_eq!(role_arn_annotation(client, ns, "api").await, None);
    assert_eq!(role_arn_annotation(client, ns, "worker").await, None);
    controller.stop().await;
}

#[tokio::test]
async fn a_resync_of_bindings_in_sync_writes_nothing() {
    // The controller's client logs its requests: the API server's side of "no writes".
    let t = TestNamespace::new("e2e").await;
    let (client, ns, moto) = (&t.client, t.ns.as_str(), &t.moto);
    let log = RequestLog::default();
    let controller = RunningController::builder(log.client(&t.cluster.kubeconfig).await, moto)
        .namespace(ns)
        .resync(Duration::from_secs(1))
        .start();
    for name in ["a", "b", "c"] {
        create_service_account(client, ns, &format!("sa-{name}")).await;
        create_binding(
            client,
            ns,
            name,
            json!({"serviceAccounts": [format!("sa-{name}")]}),
        )
        .await;
    }
    for name in ["a", "b", "c"] {
        wait_ready_reason(client, ns, name, "Synced", 20).await;
    }
    for name in ["a", "b", "c"] {
        wait_for(30, "ServiceAccount annotated", || async {
            role_arn_annotation(client, ns, &format!("sa-{name}"))
                .await
                .map(|_| ())
        })
        .await;
    }
    // Let the creation settle: a ServiceAccount's annotation re-queues its binding, and that
    // reconcile may read the binding from the cache before its Synced status arrives there,
    // writing the status once more. Settled means no write for two resync periods.
    let writes = || log.requests().iter().filter(|r| r.method != "GET").count();
    let settle_deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let before = writes();
        tokio::time::sleep(Duration::from_secs(2)).await;
        if writes() == before {
            break;
        }
        assert!(
            tokio::time::Instant::now() < settle_deadline,
            "the controller kept writing for 30 s after the bindings were Synced: {:?}",
            log.requests()
        );
    }
    let iam_writes = controller.metrics.iam_write_count();
    log.clear();
    tokio::time::sleep(Duration::from_secs(4)).await; // several resyncs of every binding
    assert_eq!(
        controller.metrics.iam_write_count(),
        iam_writes,
        "IAM writes on resync: {:?}",
        controller.metrics.iam_call_counts()
    );
    // Guardrails are cluster-wide: other tests' guardrails, created meanwhile, get their
    // status from this controller too. Those writes are not resync writes.
    let api_writes: Vec<_> = log
        .requests()
        .into_iter()
        .filter(|r| r.method != "GET" && !r.path.contains("/iamguardrails/"))
        .collect();
    assert!(
        api_writes.is_empty(),
        "Kubernetes writes on resync: {api_writes:?}"
    );
    let reads = controller
        .metrics
        .iam_call_counts()
        .iter()
        .filter(|((op, _), _)| op == "GetRole")
        .map(|(_, n)| *n)
        .sum::<u64>();
    assert!(reads >= 6, "expected resync reads, got {reads}");
    assert_eq!(hatrack_roles(moto).await.len(), 3);
    controller.stop().await;
}

#[tokio::test]
async fn an_invalid_spec_gets_invalid_spec_and_no_role() {
    let t = TestNamespace::new("e2e").await;
    let (client, ns, moto) = (&t.client, t.ns.as_str(), &t.moto);
    let controller = t.controller().start();
    create_binding(client, ns, "maybe", json!({
        "serviceAccounts": ["api"],
        "inlinePolicies": {"undecided": {"Statement": [{"Effect": "Perhaps", "Action": "s3:GetObject", "Resource": "*"}]}}
    }))
    .await;
    let b = wait_ready_reason(client, ns, "maybe", "InvalidSpec", 20).await;
    let (status, _, message) = ready(&b).unwrap();
    assert_eq!(status, "False");
    assert!(message.contains(r#"spec.inlinePolicies.undecided.Statement[0].Effect: Effect must be Allow or Deny, got "Perhaps""#), "{message}");
    assert!(hatrack_roles(moto).await.is_empty());
    assert_eq!(controller.metrics.iam_write_count(), 0);
    // fixing the spec makes it Ready
    patch_spec(client, ns, "maybe", json!({"inlinePolicies": {"undecided": {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}]}}})).await;
    wait_ready_reason(client, ns, "maybe", "Synced", 20).await;
    controller.stop().await;
}

#[tokio::test]
async fn two_bindings_claiming_one_service_account_conflict() {
    let t = TestNamespace::new("e2e").await;
    let (client, ns) = (&t.client, t.ns.as_str());
    let controller = t.controller().start();
    create_binding(client, ns, "first", json!({"serviceAccounts": ["api"]})).await;
    wait_ready_reason(client, ns, "first", "Synced", 20).await;
    // creationTimestamp has one-second resolution: make the second visibly later.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    create_binding(
        client,
        ns,
        "second",
        json!({"serviceAccounts": ["web", "api"]}),
    )
    .await;
    let b = wait_ready_reason(client, ns, "second", "ServiceAccountConflict", 20).await;
    assert!(ready(&b).unwrap().2.contains("\"first\""));
    let first = get_binding(client, ns, "first").await.unwrap();
    assert_eq!(ready(&first).unwrap().1, "Synced");
    controller.stop().await;
}

#[tokio::test]
async fn an_unowned_role_is_reported_and_left_alone() {
    let t = TestNamespace::new("e2e").await;
    let (client, ns, moto) = (&t.client, t.ns.as_str(), &t.moto);
    let controller = t.controller().start();
    let name = role_name(ns, "squatter");
    moto.sdk_client().create_role().role_name(&name).path("/hatrack/")
        .assume_role_policy_document(json!({"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"}]}).to_string())
        .send().await.unwrap();
    create_binding(client, ns, "squatter", json!({"serviceAccounts": ["api"]})).await;
    wait_ready_reason(client, ns, "squatter", "RoleNotOwned", 20).await;
    assert_eq!(controller.metrics.iam_write_count(), 0);
    // deleting the binding leaves the foreign role in place
    delete_binding(client, ns, "squatter").await;
    wait_binding_gone(client, ns, "squatter", 20).await;
    assert_eq!(hatrack_roles(moto).await, vec![name]);
    controller.stop().await;
}

#[tokio::test]
async fn retain_keeps_the_role_and_drops_the_finalizer() {
    let t = TestNamespace::new("e2e").await;
    let (client, ns, moto) = (&t.client, t.ns.as_str(), &t.moto);
    let controller = t.controller().start();
    create_binding(
        client,
        ns,
        "keeper",
        json!({"serviceAccounts": ["api"], "deletionPolicy": "Retain"}),
    )
    .await;
    wait_ready_reason(client, ns, "keeper", "Synced", 20).await;
    delete_binding(client, ns, "keeper").await;
    wait_binding_gone(client, ns, "keeper", 20).await;
    assert_eq!(hatrack_roles(moto).await, vec![role_name(ns, "keeper")]);
    controller.stop().await;
}

#[tokio::test]
async fn a_missing_oidc_provider_is_reported() {
    let t = TestNamespace::without_oidc_provider("e2e").await;
    let (client, ns, moto) = (&t.client, t.ns.as_str(), &t.moto);
    let controller = t.controller().start();
    create_binding(client, ns, "irsa", json!({"serviceAccounts": ["api"]})).await;
    let b = wait_ready_reason(client, ns, "irsa", "OidcProviderMissing", 20).await;
    assert!(ready(&b).unwrap().2.contains(ISSUER_HOST_PATH));
    assert!(hatrack_roles(moto).await.is_empty());
    // Pod Identity needs no OIDC provider.
    create_binding(
        client,
        ns,
        "pod-identity",
        json!({"serviceAccounts": ["web"], "trust": {"podIdentity": {}}}),
    )
    .await;
    wait_ready_reason(client, ns, "pod-identity", "Synced", 20).await;
    controller.stop().await;
}

#[tokio::test]
async fn a_controller_restarted_mid_way_makes_no_duplicate_or_orphan() {
    let t = TestNamespace::new("e2e").await;
    let (client, ns, moto) = (&t.client, t.ns.as_str(), &t.moto);
    let names: Vec<String> = (0..6).map(|i| format!("b{i}")).collect();
    for n in &names {
        create_binding(client, ns, n, json!({"serviceAccounts": [format!("sa-{n}")], "managedPolicyArns": ["arn:aws:iam::aws:policy/ReadOnlyAccess"]})).await;
    }
    // First controller: killed as soon as it has created some role, mid-way through the batch.
    let first = t.controller().start();
    wait_for(20, "a first role", || async {
        (!hatrack_roles(moto).await.is_empty()).then_some(())
    })
    .await;
    first.kill();
    // Delete one binding while no controller runs; its finalizer holds it.
    delete_binding(client, ns, "b0").await;
    let second = t.controller().start();
    for n in &names[1..] {
        wait_ready_reason(client, ns, n, "Synced", 30).await;
    }
    wait_binding_gone(client, ns, "b0", 20).await;
    let mut roles = hatrack_roles(moto).await;
    roles.sort();
    let mut expected: Vec<String> = names[1..].iter().map(|n| role_name(ns, n)).collect();
    expected.sort();
    assert_eq!(
        roles, expected,
        "exactly one role per live binding, none for the deleted one"
    );
    let (iam, _) = moto.iam();
    for r in &roles {
        assert_eq!(
            iam.get_role(r)
                .await
                .unwrap()
                .unwrap()
                .managed_policy_arns
                .len(),
            1
        );
    }
    second.stop().await;
}

#[tokio::test]
async fn guardrails_block_iam_writes_and_a_new_guardrail_requeues_bindings() {
    let t = TestNamespace::new("e2e").await;
    let (client, ns, moto) = (&t.client, t.ns.as_str(), &t.moto);
    let controller = t.controller().start();
    label_namespace(client, ns, json!({"tier": "sandbox"})).await;
    create_guardrail_for(client, ns, "no-iam", json!({"namespaceSelector": {"matchLabels": {"tier": "sandbox"}}, "deniedActions": ["iam:*"]})).await;
    // Let the controller's guardrail and namespace caches fill.
    tokio::time::sleep(Duration::from_millis(500)).await;

    create_binding(client, ns, "escalate", json!({"serviceAccounts": ["api"], "inlinePolicies": {"p": {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "IAM:createrole", "Resource": "*"}]}}})).await;
    let b = wait_ready_reason(client, ns, "escalate", "GuardrailViolation", 20).await;
    assert!(
        ready(&b).unwrap().2.contains(&format!(
            "IAMGuardrail {ns}-no-iam: spec.inlinePolicies.p.Statement[0].Action[0]"
        )),
        "{:?}",
        ready(&b)
    );
    assert!(
        hatrack_roles(moto).await.is_empty(),
        "no IAM writes for a violating binding"
    );

    // A binding admitted before a guardrail existed: the new guardrail re-queues it.
    // (ReadOnlyAccess would break no-iam: the controller reads it, and it grants iam:Get*.)
    create_binding(client, ns, "reader", json!({"serviceAccounts": ["web"], "managedPolicyArns": ["arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess"]})).await;
    wait_ready_reason(client, ns, "reader", "Synced", 20).await;
    create_guardrail_for(
        client,
        ns,
        "no-managed",
        json!({"allowedManagedPolicyArns": []}),
    )
    .await;
    let b = wait_ready_reason(client, ns, "reader", "GuardrailViolation", 20).await;
    assert!(
        ready(&b).unwrap().2.contains(&format!(
            "IAMGuardrail {ns}-no-managed: spec.managedPolicyArns[0]"
        )),
        "{:?}",
        ready(&b)
    );
    // Its existing role stays, without its grants (enforcement: Revoke by default).
    let (iam, _) = moto.iam();
    let role = iam
        .get_role(&role_name(ns, "reader"))
        .await
        .unwrap()
        .expect("role kept");
    assert!(role.managed_policy_arns.is_empty(), "{role:?}");
    // Deleting the guardrail re-queues it again, and the grants come back.
    let api: kube::Api<hatrack::crd::IAMGuardrail> = kube::Api::all(client.clone());
    api.delete(&format!("{ns}-no-managed"), &Default::default())
        .await
        .unwrap();
    wait_ready_reason(client, ns, "reader", "Synced", 20).await;
    let role = iam
        .get_role(&role_name(ns, "reader"))
        .await
        .unwrap()
        .expect("role kept");
    assert_eq!(role.managed_policy_arns.len(), 1);
    api.delete(&format!("{ns}-no-iam"), &Default::default())
        .await
        .unwrap();
    controller.stop().await;
}

#[tokio::test]
async fn a_required_boundary_is_set_on_the_role() {
    let t = TestNamespace::new("e2e").await;
    let (client, ns, moto) = (&t.client, t.ns.as_str(), &t.moto);
    let controller = t.controller().start();
    create_guardrail_for(
        client,
        ns,
        "boundary",
        json!({"requiredPermissionsBoundary": "arn:aws:iam::aws:policy/PowerUserAccess"}),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    create_binding(client, ns, "bounded", json!({"serviceAccounts": ["api"]})).await;
    wait_ready_reason(client, ns, "bounded", "Synced", 20).await;
    let (iam, _) = moto.iam();
    let role = iam
        .get_role(&role_name(ns, "bounded"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        role.permissions_boundary.as_deref(),
        Some("arn:aws:iam::aws:policy/PowerUserAccess")
    );
    // The controller reports each guardrail's own health in its status.
    let guardrails: kube::Api<hatrack::crd::IAMGuardrail> = kube::Api::all(client.clone());
    wait_for(30, "guardrail status Valid", || async {
        let g = guardrails.get(&format!("{ns}-boundary")).await.ok()?;
        let s = g.status?;
        (s.observed_generation == g.metadata.generation
            && s.conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True" && c.reason == "Valid"))
        .then_some(())
    })
    .await;
    create_guardrail_for(client, ns, "broken", json!({"deniedActions": ["iam"]})).await;
    let message = wait_for(30, "guardrail status Invalid", || async {
        let s = guardrails.get(&format!("{ns}-broken")).await.ok()?.status?;
        s.conditions
            .iter()
            .find(|c| c.reason == "Invalid")
            .map(|c| c.message.clone())
    })
    .await;
    assert!(message.contains("spec.deniedActions[0]"), "{message}");
    for name in ["boundary", "broken"] {
        guardrails
            .delete(&format!("{ns}-{name}"), &Default::default())
            .await
            .unwrap();
    }
    controller.stop().await;
}

#[tokio::test]
async fn a_controller_stopped_as_it_starts_stops() {
    // Shutdown before the first list of bindings has arrived: nothing was reconciled yet, and
    // the controller must not wait for a cache that will never fill.
    let cluster = cluster_with_crds().await;
    let ns = cluster.namespace("e2e").await;
    let client = cluster.client().await;
    let moto = Moto::start();
    create_binding(&client, &ns, "early", json!({"serviceAccounts": ["api"]})).await;
    for _ in 0..3 {
        RunningController::builder(client.clone(), &moto)
            .namespace(&ns)
            .start()
            .stop()
            .await;
    }
}

/// Writes to a guardrail that change no spec — its status (hatrack's guardrail status
/// controller writes it right after a change; anyone may write it) or its labels — do not
/// reconcile the bindings it selects again: each pass would re-read the role from IAM, and a
/// cluster-wide guardrail selects every binding.
#[tokio::test]
async fn a_guardrails_status_or_label_write_does_not_requeue_the_bindings_it_selects() {
    let t = TestNamespace::new("e2e").await;
    let (client, ns) = (&t.client, t.ns.as_str());
    let controller = t.controller().start();
    create_binding(client, ns, "reader", json!({"serviceAccounts": ["api"]})).await;
    wait_ready_reason(client, ns, "reader", "Synced", 30).await;
    let passes = || {
        metric(
            &controller.metrics.encode(),
            "hatrack_reconciles_total{result=\"ok\"}",
        )
        .unwrap_or(0.0)
    };
    // A pass is counted after its status write: wait until the count holds still.
    let settled_passes = || async {
        wait_for(30, "the reconciles count to hold still", || async {
            let seen = passes();
            tokio::time::sleep(Duration::from_millis(700)).await;
            (passes() == seen).then_some(seen)
        })
        .await
    };
    let before = settled_passes().await;
    let guardrail =
        create_guardrail_for(client, ns, "lenient", json!({"maxSessionDuration": 43200}))
            .await
            .metadata
            .name
            .unwrap();
    // The new guardrail re-queues the binding: one pass.
    wait_for(30, "the pass for the new guardrail", || async {
        (passes() > before).then_some(())
    })
    .await;
    let api: kube::Api<hatrack::crd::IAMGuardrail> = kube::Api::all(client.clone());
    wait_for(30, "the guardrail's status", || async {
        api.get(&guardrail).await.ok()?.status.map(|_| ())
    })
    .await;
    let settled = settled_passes().await;

    // Someone writes its status (the status controller writes it back) and labels it.
    let params = kube::api::PatchParams::default();
    let status = json!({"status": {"observedGeneration": 0, "conditions": []}});
    api.patch_status(&guardrail, &params, &kube::api::Patch::Merge(status))
        .await
        .expect("status write");
    let label = json!({"metadata": {"labels": {"reviewed": "yes"}}});
    api.patch(&guardrail, &params, &kube::api::Patch::Merge(label))
        .await
        .expect("label");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(passes(), settled, "passes after writes that change no spec");
    controller.stop().await;
}
