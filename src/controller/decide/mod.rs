//! The decide step of a reconcile: what the judge's decision means ([`after_judgement`]) and,
//! with what gather read, everything the reconcile will write ([`plan::plan`]). Pure, so each
//! branch is a table test instead of an end-to-end run.

pub mod plan;

use std::time::Duration;

use crate::guardrail::Violation;
use crate::judge::{Judgement, Problem};

/// When a refused binding is looked at again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requeue {
    /// Only when the binding changes (a spec that cannot be a role).
    AwaitChange,
    /// At the jittered resync period.
    Resync,
    /// At the resync period, but no later than this (a conflict resolves when the holder goes).
    ResyncAtMost(Duration),
    /// After this long (a missing OIDC provider is made by someone else, in minutes).
    Fixed(Duration),
}

/// How soon a binding whose ServiceAccount another binding holds is looked at again, at most.
pub const CONFLICT_RETRY: Duration = Duration::from_secs(60);

/// What the reconcile does after judging.
#[derive(Debug, Clone, PartialEq)]
pub enum Next {
    /// Nothing stands in the way: make the role.
    Proceed,
    /// Report Ready=False with this reason and message (and the role's name, when
    /// `with_role`); write nothing to IAM.
    Refuse {
        reason: &'static str,
        message: String,
        with_role: bool,
        requeue: Requeue,
    },
    /// A guardrail is violated: enforcement decides whether the role's grants go.
    Violated(Vec<Violation>),
}

/// The first kind of problem the judge found decides, in its order: account, spec,
/// guardrails, ServiceAccount conflicts, adoption. One reason is reported at a time; every
/// problem of that kind is in the message.
pub fn after_judgement(judgement: &Judgement<'_>) -> Next {
    let Some((reason, problems)) = judgement.first_reason() else {
        return Next::Proceed;
    };
    let message = || {
        problems
            .iter()
            .map(|p| match p {
                // The Ready message names the field for spec errors and guardrails only, as
                // it always has; account and adoption refusals name theirs in the text.
                Problem::Spec(_) | Problem::Guardrail(_) => p.to_string(),
                other => other.message(),
            })
            .collect::<Vec<_>>()
            .join("; ")
    };
    match problems[0] {
        Problem::Account(r) => Next::Refuse {
            reason,
            message: r.to_string(),
            with_role: false,
            requeue: Requeue::Resync,
        },
        Problem::Spec(_) => Next::Refuse {
            reason,
            message: message(),
            with_role: false,
            requeue: Requeue::AwaitChange,
        },
        Problem::Guardrail(_) => Next::Violated(
            problems
                .iter()
                .filter_map(|p| match p {
                    Problem::Guardrail(v) => Some(v.clone()),
                    _ => None,
                })
                .collect(),
        ),
        Problem::Conflict(_) => Next::Refuse {
            reason,
            message: message(),
            with_role: true,
            requeue: Requeue::ResyncAtMost(CONFLICT_RETRY),
        },
        Problem::Adoption(m) => Next::Refuse {
            reason,
            message: m.clone(),
            with_role: false,
            requeue: Requeue::Resync,
        },
    }
}

/// What a ServiceAccount's role ARN annotation needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Annotation {
    Keep,
    Set,
    Remove,
}

/// The annotation of one ServiceAccount of the binding's namespace: set where the role is worn
/// through IRSA (`wears`: bound, and the role trusts IRSA), taken back where it is not — but
/// only when it names this role, never someone else's.
pub fn annotation(wears: bool, current: Option<&str>, arn: &str) -> Annotation {
    match (wears, current == Some(arn)) {
        (true, false) => Annotation::Set,
        (false, true) => Annotation::Remove,
        _ => Annotation::Keep,
    }
}

/// The Normal Event's reason and verb after IAM writes: a role made, drift corrected in a role
/// that was in sync for this generation, or a role updated to a changed spec.
pub fn sync_event(created: bool, in_sync_before: bool) -> (&'static str, &'static str) {
    if created {
        ("RoleCreated", "Created")
    } else if in_sync_before {
        ("DriftCorrected", "Corrected drift in")
    } else {
        ("RoleUpdated", "Updated")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::claims::{Age, ClaimIndex};
    use crate::crd::{IAMAccount, IAMGuardrail, IAMRoleBinding};
    use crate::judge::{Surroundings, judge, reason};
    use crate::settings::Settings;
    use serde_json::{Value, json};
    use std::collections::BTreeMap;

    /// A binding of namespace `team` (shared with the plan's tests).
    pub(super) fn binding(name: &str, created: &str, spec: Value) -> IAMRoleBinding {
        serde_json::from_value(json!({
            "apiVersion": "hatrack.dev/v1alpha1", "kind": "IAMRoleBinding",
            "metadata": {"name": name, "namespace": "team", "creationTimestamp": created},
            "spec": spec
        }))
        .unwrap()
    }

    pub(super) fn guardrail(spec: Value) -> IAMGuardrail {
        serde_json::from_value(json!({
            "apiVersion": "hatrack.dev/v1alpha1", "kind": "IAMGuardrail",
            "metadata": {"name": "g"}, "spec": spec
        }))
        .unwrap()
    }

    fn account(selector: Value) -> IAMAccount {
        serde_json::from_value(json!({
            "apiVersion": "hatrack.dev/v1alpha1", "kind": "IAMAccount",
            "metadata": {"name": "data"},
            "spec": {"accountId": "222222222222",
                     "assumeRole": {"roleArn": "arn:aws:iam::222222222222:role/hatrack"},
                     "namespaceSelector": selector}
        }))
        .unwrap()
    }

    /// (case, binding spec, guardrail spec, an older binding's ServiceAccounts) → expected
    /// next step (`None`: proceed; `Some((reason, requeue, message fragment))`).
    #[test]
    fn the_first_kind_of_problem_decides_the_reason_and_the_requeue() {
        type Expect = Option<(&'static str, Option<Requeue>, &'static str)>;
        let cases: Vec<(&str, Value, Value, &[&str], Expect)> = vec![
            (
                "valid",
                json!({"serviceAccounts": ["api"]}),
                json!({}),
                &[],
                None,
            ),
            (
                "invalid spec waits for a change",
                json!({"serviceAccounts": ["api"], "maxSessionDuration": 60}),
                json!({}),
                &[],
                Some((
                    reason::INVALID_SPEC,
                    Some(Requeue::AwaitChange),
                    "spec.maxSessionDuration",
                )),
            ),
            (
                "spec errors come before conflicts",
                json!({"serviceAccounts": ["api"], "maxSessionDuration": 60}),
                json!({}),
                &["api"],
                Some((
                    reason::INVALID_SPEC,
                    Some(Requeue::AwaitChange),
                    "spec.maxSessionDuration",
                )),
            ),
            (
                "guardrail violation goes to enforcement",
                json!({"serviceAccounts": ["api"], "maxSessionDuration": 7200}),
                json!({"maxSessionDuration": 3600}),
                &["api"],
                Some((reason::GUARDRAIL_VIOLATION, None, "spec.maxSessionDuration")),
            ),
            (
                "an older claimant holds the ServiceAccount",
                json!({"serviceAccounts": ["web", "api"]}),
                json!({}),
                &["api"],
                Some((
                    reason::SERVICE_ACCOUNT_CONFLICT,
                    Some(Requeue::ResyncAtMost(CONFLICT_RETRY)),
                    r#"ServiceAccount "api" is already bound by IAMRoleBinding "older""#,
                )),
            ),
            (
                "adoption without a guardrail's allowance",
                json!({"serviceAccounts": ["api"], "adoptRole": "legacy"}),
                json!({}),
                &[],
                Some((
                    reason::ADOPTION_NOT_ALLOWED,
                    Some(Requeue::Resync),
                    "adoptableRoles",
                )),
            ),
            (
                "an account that does not select the namespace",
                json!({"serviceAccounts": ["api"], "account": "data"}),
                json!({}),
                &["api"],
                Some((
                    reason::ACCOUNT_NOT_ALLOWED,
                    Some(Requeue::Resync),
                    "does not select namespace \"team\"",
                )),
            ),
        ];
        let settings = Settings::example();
        let labels = BTreeMap::new();
        let acct = account(json!({"matchLabels": {"team": "data"}}));
        for (case, spec, g, older_sas, expect) in cases {
            let me = binding("me", "2026-02-01T00:00:00Z", spec);
            let older = binding(
                "older",
                "2026-01-01T00:00:00Z",
                json!({"serviceAccounts": older_sas}),
            );
            let mut claims = ClaimIndex::default();
            claims.upsert(&older);
            claims.upsert(&me);
            let g = guardrail(g);
            let guardrails = [&g];
            let accounts = [&acct];
            let judgement = judge(
                &me,
                &settings,
                &Surroundings {
                    guardrails: &guardrails,
                    namespace_labels: &labels,
                    accounts: &accounts,
                    claims: &claims,
                    age: Age::of(&me),
                    managed_policies: None,
                },
            );
            let next = after_judgement(&judgement);
            match (expect, next) {
                (None, Next::Proceed) => {}
                (
                    Some((want, Some(rq), fragment)),
                    Next::Refuse {
                        reason,
                        message,
                        requeue,
                        ..
                    },
                ) => {
                    assert_eq!((reason, requeue), (want, rq), "{case}");
                    assert!(message.contains(fragment), "{case}: {message}");
                }
                (Some((want, None, fragment)), Next::Violated(v)) => {
                    assert_eq!(want, reason::GUARDRAIL_VIOLATION, "{case}");
                    assert!(
                        v.iter().any(|v| v.field.contains(fragment)),
                        "{case}: {v:?}"
                    );
                }
                (expect, next) => panic!("{case}: expected {expect:?}, got {next:?}"),
            }
        }
    }

    #[test]
    fn annotations_are_set_where_worn_and_taken_back_only_when_ours() {
        let ours = "arn:aws:iam::1:role/ours";
        let cases = [
            (true, None, Annotation::Set),
            (true, Some("arn:aws:iam::1:role/other"), Annotation::Set),
            (true, Some(ours), Annotation::Keep),
            (false, Some(ours), Annotation::Remove),
            (false, Some("arn:aws:iam::1:role/other"), Annotation::Keep),
            (false, None, Annotation::Keep),
        ];
        for (wears, current, want) in cases {
            assert_eq!(
                annotation(wears, current, ours),
                want,
                "{wears} {current:?}"
            );
        }
    }

    #[test]
    fn the_sync_event_says_made_corrected_or_updated() {
        assert_eq!(sync_event(true, true).0, "RoleCreated");
        assert_eq!(sync_event(false, true).0, "DriftCorrected");
        assert_eq!(sync_event(false, false).0, "RoleUpdated");
    }
}
