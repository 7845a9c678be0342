//! The action rules of a guardrail (`deniedActions`, `deniedActionsOnAllResources`) applied to
//! a policy document: which Allow statements could grant a denied action.

use std::collections::HashMap;

use serde_json::Value;

use crate::crd::IAMGuardrail;
use crate::policy::intersect::patterns_intersect;
use crate::policy::wildcard;
use crate::settings::Settings;

/// The action rules of one guardrail (`deniedActions`, `deniedActionsOnAllResources`), to
/// apply to any policy document: a binding's inline policies or an attached managed policy.
pub(super) struct ActionRules<'a> {
    denied: &'a [String],
    denied_on_all: &'a [String],
    denied_index: ActionIndex<'a>,
    denied_on_all_index: ActionIndex<'a>,
    /// A role ARN no binding could name on purpose: a `Resource` matching it matches any role.
    probe_role_arn: String,
}

impl<'a> ActionRules<'a> {
    pub(super) fn of(g: &'a IAMGuardrail, settings: &Settings) -> ActionRules<'a> {
        let denied = g.spec.denied_actions.as_deref().unwrap_or(&[]);
        let denied_on_all = g
            .spec
            .denied_actions_on_all_resources
            .as_deref()
            .unwrap_or(&[]);
        ActionRules {
            denied,
            denied_on_all,
            denied_index: ActionIndex::new(denied),
            denied_on_all_index: ActionIndex::new(denied_on_all),
            probe_role_arn: format!(
                "arn:{}:iam::{}:role/hatrack-guardrail-probe/any-role-3f9c",
                settings.partition, settings.account_id
            ),
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.denied.is_empty() && self.denied_on_all.is_empty()
    }

    /// (field, message) for each Allow statement of a policy document that could grant a
    /// denied action. Odd shapes are skipped (documents are validated elsewhere).
    ///
    /// Conditions are not evaluated, on purpose (README "Guardrails"): an Allow with a
    /// `Condition` still grants whenever its condition holds, which the role's holder often
    /// controls (tags, source IP, time), so it counts as if unconditioned; and a Deny, with or
    /// without a `Condition`, never offsets an Allow here: a conditioned Deny stops applying
    /// when its condition fails, and crediting any Deny would make the check depend on how
    /// statements of different policies combine, which a guardrail must not bet on.
    pub(super) fn grants(&self, doc: &Value) -> Vec<(String, String)> {
        let statements: Vec<&Value> = match doc.get("Statement") {
            Some(Value::Array(items)) => items.iter().collect(),
            Some(s @ Value::Object(_)) => vec![s],
            _ => return Vec::new(),
        };
        let as_list = |v: &Value| -> Vec<String> {
            match v {
                Value::String(s) => vec![s.clone()],
                Value::Array(items) => items
                    .iter()
                    .filter_map(|i| i.as_str().map(str::to_string))
                    .collect(),
                _ => Vec::new(),
            }
        };
        let mut out = Vec::new();
        for (i, st) in statements.iter().enumerate() {
            // Deny statements grant nothing, and are not credited with taking a grant away.
            if st.get("Effect").and_then(Value::as_str) != Some("Allow") {
                continue;
            }
            let conditioned = if st.get("Condition").is_some() {
                " (its Condition does not exempt it: a conditioned Allow grants whenever the condition holds)"
            } else {
                ""
            };
            let all_denied = || {
                self.denied
                    .iter()
                    .chain(self.denied_on_all)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            if st.get("NotAction").is_some() {
                out.push((
                    format!("Statement[{i}].NotAction"),
                    format!(
                        "an Allow with NotAction grants nearly every action, including denied ones ({}){conditioned}",
                        all_denied()
                    ),
                ));
                continue;
            }
            let Some(actions) = st.get("Action") else {
                continue;
            };
            // On every resource: `*`, a pattern any role matches, or NotResource.
            let any_resource = st.get("NotResource").is_some()
                || st.get("Resource").is_some_and(|r| {
                    as_list(r)
                        .iter()
                        .any(|p| p == "*" || wildcard::matches(p, &self.probe_role_arn, false))
                });
            for (j, action) in as_list(actions).iter().enumerate() {
                if let Some(d) = self.denied_index.find(action) {
                    out.push((
                        format!("Statement[{i}].Action[{j}]"),
                        format!("{action:?} could grant {d:?}, which is denied{conditioned}"),
                    ));
                } else if any_resource && let Some(d) = self.denied_on_all_index.find(action) {
                    out.push((
                        format!("Statement[{i}].Action[{j}]"),
                        format!(
                            "{action:?} could grant {d:?} on every resource, which is denied (name the resources){conditioned}"
                        ),
                    ));
                }
            }
        }
        out
    }
}

/// Denied action patterns grouped by service (the part before `:`, lower-cased), so that an
/// action is compared only with the patterns of its own service (and those whose service has
/// a wildcard): an AWS managed policy lists thousands of actions (ReadOnlyAccess: ~3,000).
struct ActionIndex<'a> {
    by_service: HashMap<String, Vec<&'a String>>,
    /// Patterns whose service part has a wildcard (or that have no `:`): compared with all.
    any_service: Vec<&'a String>,
}

impl<'a> ActionIndex<'a> {
    fn new(patterns: &'a [String]) -> ActionIndex<'a> {
        let mut index = ActionIndex {
            by_service: HashMap::new(),
            any_service: Vec::new(),
        };
        for p in patterns {
            match literal_service(p) {
                Some(svc) => index.by_service.entry(svc).or_default().push(p),
                None => index.any_service.push(p),
            }
        }
        index
    }

    /// The first pattern that `action` (itself a pattern) could intersect.
    fn find(&self, action: &str) -> Option<&'a String> {
        let candidates: Box<dyn Iterator<Item = &&'a String>> = match literal_service(action) {
            Some(svc) => Box::new(
                self.by_service
                    .get(&svc)
                    .into_iter()
                    .flatten()
                    .chain(self.any_service.iter()),
            ),
            None => Box::new(
                self.by_service
                    .values()
                    .flatten()
                    .chain(self.any_service.iter()),
            ),
        };
        candidates
            .copied()
            .find(|d| patterns_intersect(action, d, true))
    }
}

/// The service of an action pattern, lower-cased, when it is literal (`iam` in `iam:Get*`);
/// `None` when it has a wildcard or there is no `:` (`*`, `i*:Create*`).
fn literal_service(pattern: &str) -> Option<String> {
    let (svc, _) = pattern.split_once(':')?;
    (!svc.contains(['*', '?'])).then(|| svc.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::testing::*;
    use super::super::{ManagedPolicyDocument, check_managed};
    use super::*;

    #[test]
    fn denied_actions_catch_every_spelling() {
        let g = guardrail(
            "no-iam",
            json!({"deniedActions": ["iam:*", "organizations:*", "sts:AssumeRole"]}),
        );
        for action in [
            "*",
            "iam:*",
            "IAM:createrole",
            "i*:Create*",
            "sts:Assume*",
            "org*:List*",
        ] {
            let v = violations(&g, &binding(inline(json!([action]))));
            assert_eq!(v.len(), 1, "{action}: {v:?}");
            assert!(
                v[0].contains("IAMGuardrail no-iam: spec.inlinePolicies.p.Statement[0].Action[0]"),
                "{v:?}"
            );
        }
        for action in [
            "s3:GetObject",
            "sts:AssumeRoleWithWebIdentity",
            "ec2:Describe*",
        ] {
            assert!(
                violations(&g, &binding(inline(json!([action])))).is_empty(),
                "{action}"
            );
        }
    }

    #[test]
    fn deny_statements_never_violate_and_not_action_always_does() {
        let g = guardrail("no-iam", json!({"deniedActions": ["iam:*"]}));
        let deny = json!({"serviceAccounts": ["api"], "inlinePolicies": {"p": {"Version": "2012-10-17", "Statement": [{"Effect": "Deny", "Action": "*", "Resource": "*"}]}}});
        assert!(violations(&g, &binding(deny)).is_empty());
        let not_action = json!({"serviceAccounts": ["api"], "inlinePolicies": {"p": {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "NotAction": "s3:*", "Resource": "*"}]}}});
        let v = violations(&g, &binding(not_action));
        assert!(v[0].contains("NotAction"), "{v:?}");
    }

    #[test]
    fn a_condition_never_excuses_an_allow_and_no_deny_offsets_one() {
        let no_iam = guardrail("no-iam", json!({"deniedActions": ["iam:*"]}));
        let no_any_role = guardrail(
            "no-any-role",
            json!({"deniedActionsOnAllResources": ["iam:PassRole"]}),
        );
        let policy = |statements: Value| {
            binding(
                json!({"serviceAccounts": ["api"], "inlinePolicies": {"p": {"Version": "2012-10-17", "Statement": statements}}}),
            )
        };
        // A condition the holder may well meet (or that looks unmeetable): still a grant.
        let in_region = json!({"StringEquals": {"aws:RequestedRegion": "nowhere-1"}});
        let v = violations(
            &no_iam,
            &policy(
                json!([{"Effect": "Allow", "Action": "iam:CreateUser", "Resource": "*", "Condition": in_region}]),
            ),
        );
        assert_eq!(v.len(), 1, "{v:?}");
        assert!(
            v[0].contains("Statement[0].Action[0]") && v[0].contains("Condition"),
            "{v:?}"
        );
        let v = violations(
            &no_any_role,
            &policy(
                json!([{"Effect": "Allow", "Action": "iam:PassRole", "Resource": "*", "Condition": {"StringEquals": {"iam:PassedToService": "ec2.amazonaws.com"}}}]),
            ),
        );
        assert_eq!(v.len(), 1, "{v:?}");
        assert!(v[0].contains("on every resource"), "{v:?}");
        let v = violations(
            &no_iam,
            &policy(
                json!([{"Effect": "Allow", "NotAction": "s3:*", "Resource": "*", "Condition": in_region}]),
            ),
        );
        assert!(v.len() == 1 && v[0].contains("NotAction"), "{v:?}");
        // A Deny beside the Allow, conditioned or not, is not credited with removing it.
        for deny in [
            json!({"Effect": "Deny", "Action": "iam:*", "Resource": "*", "Condition": {"Bool": {"aws:MultiFactorAuthPresent": "false"}}}),
            json!({"Effect": "Deny", "Action": "iam:*", "Resource": "*"}),
        ] {
            let allow = json!({"Effect": "Allow", "Action": "iam:*", "Resource": "*"});
            let v = violations(&no_iam, &policy(json!([allow, deny])));
            assert_eq!(v.len(), 1, "{deny}: {v:?}");
            assert!(v[0].contains("Statement[0].Action[0]"), "{v:?}");
        }
        // The same in an attached managed policy's document.
        let b = binding(
            json!({"serviceAccounts": ["a"], "managedPolicyArns": ["arn:aws:iam::111122223333:policy/cond"]}),
        );
        let docs = [ManagedPolicyDocument {
            arn: "arn:aws:iam::111122223333:policy/cond".into(),
            version_id: "v1".into(),
            document: json!({"Version": "2012-10-17", "Statement": [
                {"Effect": "Allow", "Action": "iam:AttachRolePolicy", "Resource": "*", "Condition": {"StringLike": {"aws:PrincipalTag/team": "*"}}},
                {"Effect": "Deny", "Action": "iam:*", "Resource": "*", "Condition": {"StringNotLike": {"aws:PrincipalTag/team": "*"}}}
            ]}),
        }];
        let v = check_managed(&b, &Settings::example(), &[&no_iam], &docs);
        assert_eq!(v.len(), 1, "{v:?}");
        assert!(v[0].message.contains("Condition"), "{}", v[0].message);
    }

    #[test]
    fn actions_denied_on_all_resources_are_allowed_on_named_roles() {
        let g = guardrail(
            "no-any-role",
            json!({"deniedActionsOnAllResources": ["iam:PassRole", "sts:AssumeRole"]}),
        );
        let with = |action: &str, resource: Value| {
            binding(
                json!({"serviceAccounts": ["api"], "inlinePolicies": {"p": {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": action, "Resource": resource}]}}}),
            )
        };
        for (action, resource) in [
            ("iam:PassRole", json!("*")),
            (
                "iam:Pass*",
                json!(["arn:aws:iam::111122223333:role/x", "*"]),
            ),
            ("sts:AssumeRole", json!("arn:aws:iam::*:role/*")),
            ("sts:*", json!("arn:aws:iam::111122223333:role/*")),
            ("*", json!("arn:aws:iam::111122223333:role/*")),
        ] {
            let v = violations(&g, &with(action, resource.clone()));
            assert_eq!(v.len(), 1, "{action} on {resource}: {v:?}");
            assert!(v[0].contains("on every resource"), "{v:?}");
        }
        for (action, resource) in [
            (
                "iam:PassRole",
                json!("arn:aws:iam::111122223333:role/app-task"),
            ),
            (
                "sts:AssumeRole",
                json!("arn:aws:iam::111122223333:role/team-*"),
            ),
            ("sts:AssumeRoleWithWebIdentity", json!("*")),
            ("s3:GetObject", json!("*")),
        ] {
            assert!(
                violations(&g, &with(action, resource.clone())).is_empty(),
                "{action} on {resource}"
            );
        }
        let not_resource = binding(
            json!({"serviceAccounts": ["api"], "inlinePolicies": {"p": {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "iam:PassRole", "NotResource": "arn:aws:iam::111122223333:role/admin"}]}}}),
        );
        assert_eq!(violations(&g, &not_resource).len(), 1);
    }
}
