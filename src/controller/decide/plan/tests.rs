//! The decide step's branches as tables: judgement + what gather read → plan.

use super::*;
use crate::claims::{Age, ClaimIndex};
use crate::judge::{Surroundings, judge};
use crate::settings::Settings;
use serde_json::{Value, json};

const OWN_NAME: &str = "own-name";
const PROVIDER: &str = "arn:aws:iam::111122223333:oidc-provider/x";

use crate::controller::decide::tests::guardrail;

fn binding(spec: Value) -> IAMRoleBinding {
    crate::controller::decide::tests::binding("api", "2026-01-01T00:00:00Z", spec)
}

/// Judges `b` under guardrail `g` and plans it with `read`; also returns what gather was
/// asked to read.
fn decide(b: &IAMRoleBinding, g: Value, read: &Read) -> (Reads, Plan, Option<DesiredRole>) {
    let settings = Settings::example();
    let g = guardrail(g);
    let guardrails = [&g];
    let labels = BTreeMap::new();
    let claims = ClaimIndex::default();
    let judgement = judge(
        b,
        &settings,
        &Surroundings {
            guardrails: &guardrails,
            namespace_labels: &labels,
            accounts: &[],
            claims: &claims,
            age: Age::of(b),
            managed_policies: None,
        },
    );
    let owner = Owner::of(&settings, "team", "api");
    let next = crate::controller::decide::after_judgement(&judgement);
    let reads = reads(b, &judgement, &next, Some(PROVIDER.to_string()));
    let planned = plan(
        b,
        &judgement,
        next,
        judgement.desired.as_ref(),
        read,
        &owner,
        OWN_NAME,
    );
    (reads, planned, judgement.desired.clone())
}

/// The role a binding wants, as IAM would have it once in sync.
fn in_sync(b: &IAMRoleBinding) -> ActualRole {
    crate::role::desired_role(b, &Settings::example())
        .unwrap()
        .role
}

fn operations(diff: &Diff) -> Vec<&'static str> {
    diff.changes.iter().map(Change::operation).collect()
}

fn refusal(plan: &Plan) -> (&'static str, &str, Requeue) {
    match plan {
        Plan::Refuse(r) => (r.reason, r.message.as_str(), r.requeue),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn make(plan: Plan) -> Make {
    match plan {
        Plan::Make(m) => *m,
        other => panic!("expected the role to be made, got {other:?}"),
    }
}

#[test]
fn a_refused_binding_reads_nothing_and_writes_nothing() {
    let cases = [
        (
            json!({"serviceAccounts": ["api"], "maxSessionDuration": 60}),
            json!({}),
            "InvalidSpec",
            Requeue::AwaitChange,
        ),
        (
            json!({"serviceAccounts": ["api"], "adoptRole": "legacy"}),
            json!({}),
            "AdoptionNotAllowed",
            Requeue::Resync,
        ),
    ];
    for (spec, g, want, requeue) in cases {
        let (reads, plan, _) = decide(&binding(spec), g, &Read::default());
        assert_eq!(reads, Reads::default(), "{want}");
        let (reason, _, got) = refusal(&plan);
        assert_eq!((reason, got), (want, requeue));
    }
}

#[test]
fn a_role_to_make_is_created_and_worn_through_irsa() {
    let b = binding(json!({"serviceAccounts": ["api"]}));
    let read = Read {
        oidc_provider: Some((PROVIDER.into(), true)),
        role: None,
        own_name_role: None,
        service_accounts: vec![
            ("api".into(), None),
            // Not bound, but annotated with this role: taken back.
            ("old".into(), None),
            ("other".into(), Some("arn:aws:iam::1:role/theirs".into())),
        ],
    };
    let (reads, _, desired) = decide(&b, json!({}), &read);
    let desired = desired.unwrap();
    assert_eq!(
        reads,
        Reads {
            oidc_provider: Some(PROVIDER.into()),
            role: Some(desired.role.role_name.clone()),
            service_accounts: true,
            chain: true,
        }
    );
    let mut read = read;
    read.service_accounts[1].1 = Some(desired.role.arn.clone());
    let made = make(decide(&b, json!({}), &read).1);
    assert_eq!(operations(&made.role_writes)[0], "CreateRole");
    assert_eq!(made.adopt_tags, None);
    assert_eq!(
        made.annotations,
        [
            ("api".to_string(), Annotation::Set),
            ("old".to_string(), Annotation::Remove)
        ]
    );
}

#[test]
fn a_role_in_sync_needs_no_write() {
    let b = binding(json!({"serviceAccounts": ["api"]}));
    let actual = in_sync(&b);
    let read = Read {
        oidc_provider: Some((PROVIDER.into(), true)),
        service_accounts: vec![("api".into(), Some(actual.arn.clone()))],
        role: Some(actual),
        own_name_role: None,
    };
    let made = make(decide(&b, json!({}), &read).1);
    assert!(made.role_writes.changes.is_empty(), "{made:?}");
    assert!(made.annotations.is_empty());
}

#[test]
fn pod_identity_needs_no_oidc_provider_and_no_annotation() {
    let b = binding(json!({"serviceAccounts": ["api"], "trust": {"podIdentity": {}}}));
    let read = Read {
        service_accounts: vec![("api".into(), None)],
        ..Read::default()
    };
    let (reads, plan, _) = decide(&b, json!({}), &read);
    assert_eq!(reads.oidc_provider, None);
    assert!(make(plan).annotations.is_empty());
}

#[test]
fn a_missing_oidc_provider_refuses_for_minutes() {
    let b = binding(json!({"serviceAccounts": ["api"]}));
    let read = Read {
        oidc_provider: Some((PROVIDER.into(), false)),
        ..Read::default()
    };
    let (reason, message, requeue) = {
        let plan = decide(&b, json!({}), &read).1;
        let (r, m, q) = refusal(&plan);
        (r, m.to_string(), q)
    };
    assert_eq!(reason, "OidcProviderMissing");
    assert!(message.contains(PROVIDER), "{message}");
    assert_eq!(requeue, Requeue::Fixed(OIDC_PROVIDER_RETRY));
}

#[test]
fn a_role_someone_else_owns_is_never_written() {
    let b = binding(json!({"serviceAccounts": ["api"]}));
    let mut theirs = in_sync(&b);
    theirs.tags.clear();
    // Without a read under this cluster's own name: refused.
    let read = Read {
        role: Some(theirs.clone()),
        ..Read::default()
    };
    let plan = decide(&b, json!({}), &read).1;
    assert_eq!(refusal(&plan).0, "RoleNotOwned");
    // The own name is free: the role is made under it.
    let read = Read {
        role: Some(theirs.clone()),
        own_name_role: Some(None),
        ..Read::default()
    };
    let made = make(decide(&b, json!({}), &read).1);
    assert_eq!(made.desired.role.role_name, OWN_NAME);
    assert!(made.desired.role.arn.ends_with(OWN_NAME));
    assert_eq!(operations(&made.role_writes)[0], "CreateRole");
    // Someone holds that one too: refused, naming it.
    let read = Read {
        role: Some(theirs.clone()),
        own_name_role: Some(Some(theirs)),
        ..Read::default()
    };
    let plan = decide(&b, json!({}), &read).1;
    let (reason, message, _) = refusal(&plan);
    assert_eq!(reason, "RoleNotOwned");
    assert!(message.contains(OWN_NAME), "{message}");
}

#[test]
fn the_own_name_is_read_only_when_the_name_in_use_is_someone_elses() {
    let b = binding(json!({"serviceAccounts": ["api"]}));
    let settings = Settings::example();
    let desired = crate::role::desired_role(&b, &settings).unwrap();
    let owner = Owner::of(&settings, "team", "api");
    let ours = in_sync(&b);
    let mut theirs = ours.clone();
    theirs.tags.clear();
    assert!(needs_own_name_read(
        &b,
        &desired,
        Some(&theirs),
        &owner,
        OWN_NAME
    ));
    assert!(!needs_own_name_read(
        &b,
        &desired,
        Some(&ours),
        &owner,
        OWN_NAME
    ));
    assert!(!needs_own_name_read(&b, &desired, None, &owner, OWN_NAME));
    let same = desired.role.role_name.clone();
    assert!(!needs_own_name_read(
        &b,
        &desired,
        Some(&theirs),
        &owner,
        &same
    ));
}

#[test]
fn adoption_tags_an_allowed_role_first_and_takes_nobody_elses() {
    let b = binding(json!({"serviceAccounts": ["api"], "adoptRole": "legacy"}));
    let allow = json!({"adoptableRoles": ["legacy"]});
    let legacy = || {
        let mut r = in_sync(&b);
        r.role_name = "legacy".into();
        r.path = "/terraform/".into();
        r.arn = "arn:aws:iam::111122223333:role/terraform/legacy".into();
        r.tags = [("owner".to_string(), "terraform".to_string())].into();
        r
    };
    let (reads, _, _) = decide(&b, allow.clone(), &Read::default());
    assert_eq!(reads.role.as_deref(), Some("legacy"));

    // Missing: nothing is made.
    let plan = decide(&b, allow.clone(), &Read::default()).1;
    assert_eq!(refusal(&plan).0, "AdoptedRoleMissing");

    // Untagged: tagged as this binding's, then synced in place (no CreateRole).
    let read = Read {
        role: Some(legacy()),
        ..Read::default()
    };
    let made = make(decide(&b, allow.clone(), &read).1);
    let tags = made.adopt_tags.clone().unwrap();
    assert_eq!(tags.get(TAG_ADOPTED).map(String::as_str), Some("true"));
    assert!(tags.keys().any(|k| k.starts_with(naming::TAG_PREFIX)));
    assert_eq!(made.desired.role.role_name, "legacy");
    assert_eq!(made.desired.role.path, "/terraform/");
    assert!(!operations(&made.role_writes).contains(&"CreateRole"));

    // Already this binding's: no TagRole.
    let mut ours = legacy();
    ours.tags.extend(tags);
    let read = Read {
        role: Some(ours),
        ..Read::default()
    };
    assert_eq!(make(decide(&b, allow.clone(), &read).1).adopt_tags, None);

    // Tagged by hatrack for another binding: never taken.
    let mut elses = legacy();
    elses
        .tags
        .extend(naming::ownership_tags("prod-eu", "team", "other"));
    let read = Read {
        role: Some(elses),
        ..Read::default()
    };
    assert_eq!(refusal(&decide(&b, allow, &read).1).0, "RoleNotOwned");

    // A path pattern the role's path does not match: refused once the path is known.
    let read = Read {
        role: Some(legacy()),
        ..Read::default()
    };
    let plan = decide(&b, json!({"adoptableRoles": ["/platform/*"]}), &read).1;
    assert_eq!(refusal(&plan).0, "AdoptionNotAllowed");
}

#[test]
fn a_violation_revokes_the_grants_of_our_role_only() {
    let b = binding(json!({
        "serviceAccounts": ["api"], "maxSessionDuration": 7200,
        "managedPolicyArns": ["arn:aws:iam::aws:policy/ReadOnlyAccess"],
        "inlinePolicies": {"put": {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:PutObject", "Resource": "*"}]}}
    }));
    let limit = json!({"maxSessionDuration": 3600});

    // Report: the role is not even read.
    let report = json!({"maxSessionDuration": 3600, "enforcement": "Report"});
    let (reads, plan, _) = decide(&b, report, &Read::default());
    assert_eq!(reads, Reads::default());
    assert!(refusal(&plan).1.contains("enforcement: Report"));

    // Revoke: the role is read; ours loses every permission policy.
    let (reads, _, desired) = decide(&b, limit.clone(), &Read::default());
    assert_eq!(reads.role, desired.map(|d| d.role.role_name));
    let read = Read {
        role: Some(in_sync(&b)),
        ..Read::default()
    };
    match decide(&b, limit.clone(), &read).1 {
        Plan::Revoke(r) => {
            let ops: Vec<_> = r.changes.iter().map(Change::operation).collect();
            assert_eq!(ops, ["DeleteRolePolicy", "DetachRolePolicy"]);
            assert_eq!((r.inline, r.managed), (1, 1));
            assert!(r.violations.contains("spec.maxSessionDuration"), "{r:?}");
            assert_eq!(r.removed().len(), 2);
            let withheld = r.withheld();
            assert!(
                withheld.contains("inline policy ") && withheld.contains("managed policy arn:"),
                "{withheld}"
            );
            // A later pass finds the role stripped (or runs on a cache that has not yet seen
            // the first pass's status): nothing to remove, the same grants withheld.
            let mut stripped = in_sync(&b);
            stripped.inline_policies.clear();
            stripped.managed_policy_arns.clear();
            let read = Read {
                role: Some(stripped),
                ..Read::default()
            };
            match decide(&b, limit.clone(), &read).1 {
                Plan::Revoke(again) => {
                    assert!(again.changes.is_empty() && again.removed().is_empty());
                    assert_eq!(again.withheld(), withheld);
                }
                other => panic!("expected a revocation, got {other:?}"),
            }
        }
        other => panic!("expected a revocation, got {other:?}"),
    }

    // No role, or someone else's: nothing to take, nothing made.
    let mut theirs = in_sync(&b);
    theirs.tags.clear();
    for role in [None, Some(theirs)] {
        let read = Read {
            role,
            ..Read::default()
        };
        let plan = decide(&b, limit.clone(), &read).1;
        let (reason, message, _) = refusal(&plan);
        assert_eq!(reason, "GuardrailViolation");
        assert!(
            message.contains("no IAM role is created or changed"),
            "{message}"
        );
    }
}

#[test]
fn revocation_removes_every_permission_policy_and_nothing_else() {
    let mut actual = ActualRole::default();
    actual
        .inline_policies
        .insert("a".into(), json!({"Statement": []}));
    actual
        .managed_policy_arns
        .insert("arn:aws:iam::aws:policy/IAMFullAccess".into());
    let ops: Vec<_> = revocation(&actual).iter().map(Change::operation).collect();
    assert_eq!(ops, ["DeleteRolePolicy", "DetachRolePolicy"]);
    assert!(revocation(&ActualRole::default()).is_empty());
}
