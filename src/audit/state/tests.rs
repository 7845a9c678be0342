use super::*;
use crate::detect::{self, InMemoryView};
use serde_json::json;

pub(super) const KEY_ID: &str = "AKIAZ7Q3EXAMPLEK3Y4N";

fn deployment(env_from_secret: &str) -> Value {
    json!({"spec": {"template": {"spec": {"containers": [
        {"name": "app", "envFrom": [{"secretRef": {"name": env_from_secret}}]}
    ]}}}})
}

pub(super) fn w<'a>(uid: &'a str, rv: &'a str, body: &'a Value) -> Workload<'a> {
    Workload {
        kind: WorkloadKind::Deployment,
        namespace: "team",
        name: "app",
        uid,
        resource_version: rv,
        body,
    }
}

fn facts(data: &[(&str, &str)]) -> ObjectFacts {
    detect::classify_data(data.iter().map(|(k, v)| (*k, v.as_bytes())))
}

#[test]
fn unchanged_workloads_are_not_judged_again_and_findings_mark_the_namespace() {
    let mut view = InMemoryView::new();
    view.insert(
        RefKind::Secret,
        "team",
        "creds",
        facts(&[("AWS_ACCESS_KEY_ID", KEY_ID)]),
    );
    let mut state = AuditState::new();
    let policy = AuditPolicy::default();
    let body = deployment("creds");
    assert!(state.upsert(&w("u1", "1", &body), true, &policy, &view));
    assert!(!state.upsert(&w("u1", "1", &body), true, &policy, &view));
    assert_eq!(state.judged, 1);
    assert_eq!(state.take_dirty(), vec![Arc::<str>::from("team")]);
    let failing = state.failing_in("team");
    assert_eq!(failing.len(), 1);
    assert_eq!(failing[0].findings[0].rule, RuleId::EnvFromCredentialKeys);
    assert_eq!(failing[0].findings[0].container.as_deref(), Some("app"));
    // A new resourceVersion with the same findings: judged, report untouched.
    assert!(state.upsert(&w("u1", "2", &body), true, &policy, &view));
    assert!(state.take_dirty().is_empty());
    assert_eq!(
        state.summary("team").by_rule,
        BTreeMap::from([(RuleId::EnvFromCredentialKeys, 1)])
    );
    state.remove("u1");
    assert_eq!(state.take_dirty(), vec![Arc::<str>::from("team")]);
    assert!(state.failing_in("team").is_empty());
    assert!(state.readers.is_empty(), "reverse index emptied");
}

#[test]
fn a_secret_that_gains_keys_makes_its_readers_stale_and_a_rotation_does_not() {
    let mut view = InMemoryView::new();
    view.insert(
        RefKind::Secret,
        "team",
        "creds",
        facts(&[("password", "x")]),
    );
    let mut state = AuditState::new();
    let policy = AuditPolicy::default();
    let body = deployment("creds");
    state.upsert(&w("u1", "1", &body), true, &policy, &view);
    assert!(state.failing_in("team").is_empty());
    // Same facts (another password): nothing to judge again.
    view.insert(
        RefKind::Secret,
        "team",
        "creds",
        facts(&[("password", "y")]),
    );
    assert!(
        state
            .stale_readers_of(RefKind::Secret, "team", "creds", &view)
            .is_empty()
    );
    view.insert(
        RefKind::Secret,
        "team",
        "creds",
        facts(&[("AWS_ACCESS_KEY_ID", KEY_ID)]),
    );
    let stale = state.stale_readers_of(RefKind::Secret, "team", "creds", &view);
    assert_eq!(stale.len(), 1);
    assert_eq!(state.all_stale(&view), stale);
    state.invalidate(&stale[0].uid);
    assert!(state.upsert(&w("u1", "1", &body), true, &policy, &view));
    assert_eq!(state.failing_in("team").len(), 1);
    assert!(state.all_stale(&view).is_empty());
}

#[test]
fn a_missing_optional_secret_that_appears_is_judged() {
    let view0 = InMemoryView::new();
    let body = json!({"spec": {"template": {"spec": {"containers": [
        {"name": "app", "envFrom": [{"secretRef": {"name": "later", "optional": true}}]}
    ]}}}});
    let mut state = AuditState::new();
    state.upsert(&w("u1", "1", &body), true, &AuditPolicy::default(), &view0);
    assert!(state.failing_in("team").is_empty());
    let mut view = InMemoryView::new();
    view.insert(
        RefKind::Secret,
        "team",
        "later",
        facts(&[(
            "AWS_SECRET_ACCESS_KEY",
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKE",
        )]),
    );
    assert_eq!(
        state
            .stale_readers_of(RefKind::Secret, "team", "later", &view)
            .len(),
        1
    );
}

#[test]
fn relists_drop_what_is_gone_and_exempt_or_owned_workloads_are_not_kept() {
    let view = InMemoryView::new();
    let body = json!({"spec": {"template": {"spec": {"containers": [
        {"name": "app", "env": [{"name": "AWS_ACCESS_KEY_ID", "value": KEY_ID}]}
    ]}}}});
    let mut state = AuditState::new();
    let policy = AuditPolicy {
        exempt_namespaces: HashSet::from(["kube-system".to_string()]),
    };
    state.upsert(&w("u1", "1", &body), true, &policy, &view);
    state.upsert(&w("u2", "1", &body), true, &policy, &view);
    assert_eq!(state.failing_in("team").len(), 2);
    state.take_dirty();
    state.begin_relist(WorkloadKind::Deployment);
    state.upsert(&w("u1", "1", &body), true, &policy, &view);
    state.end_relist(WorkloadKind::Deployment);
    assert_eq!(state.len(), 1);
    assert_eq!(state.take_dirty(), vec![Arc::<str>::from("team")]);
    assert_eq!(state.judged, 2, "the re-list judged nothing again");
    // Owned now: forgotten.
    state.upsert(&w("u1", "2", &body), false, &policy, &view);
    assert!(state.is_empty());
    let mut exempt = w("u3", "1", &body);
    exempt.namespace = "kube-system";
    assert!(!state.upsert(&exempt, true, &policy, &view));
    assert!(state.is_empty());
}
