//! Which guardrails apply: a namespace's labels against each guardrail's selector.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use crate::crd::IAMGuardrail;

/// Whether a label selector selects an object with these labels (`None` and `{}` select all).
pub fn selector_matches(
    selector: Option<&LabelSelector>,
    labels: &BTreeMap<String, String>,
) -> bool {
    let Some(sel) = selector else { return true };
    if let Some(ml) = &sel.match_labels
        && !ml.iter().all(|(k, v)| labels.get(k) == Some(v))
    {
        return false;
    }
    for expr in sel.match_expressions.iter().flatten() {
        let value = labels.get(&expr.key);
        let values = expr.values.as_deref().unwrap_or(&[]);
        let ok = match expr.operator.as_str() {
            "In" => value.is_some_and(|v| values.contains(v)),
            "NotIn" => value.is_none_or(|v| !values.contains(v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            // An operator the API server would refuse: select nothing rather than everything.
            _ => false,
        };
        if !ok {
            return false;
        }
    }
    true
}

/// The guardrails that apply to a namespace with these labels (from any collection: owned,
/// or `Arc`s shared with a watch cache, mapped with `Arc::as_ref`).
pub fn applicable<'a>(
    guardrails: impl IntoIterator<Item = &'a IAMGuardrail>,
    namespace_labels: &BTreeMap<String, String>,
) -> Vec<&'a IAMGuardrail> {
    guardrails
        .into_iter()
        .filter(|g| selector_matches(g.spec.namespace_selector.as_ref(), namespace_labels))
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::testing::*;
    use super::*;

    #[test]
    fn selectors_pick_namespaces() {
        let g = guardrail(
            "g",
            json!({"namespaceSelector": {"matchLabels": {"tier": "sandbox"}, "matchExpressions": [{"key": "team", "operator": "NotIn", "values": ["platform"]}]}}),
        );
        let all = [g];
        assert_eq!(applicable(&all, &labels(&[("tier", "sandbox")])).len(), 1);
        assert_eq!(
            applicable(&all, &labels(&[("tier", "sandbox"), ("team", "platform")])).len(),
            0
        );
        assert_eq!(applicable(&all, &labels(&[("tier", "prod")])).len(), 0);
        let everywhere = [guardrail("all", json!({}))];
        assert_eq!(applicable(&everywhere, &labels(&[])).len(), 1);
        let exists = LabelSelector {
            match_expressions: Some(vec![
                k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement {
                    key: "x".into(),
                    operator: "Exists".into(),
                    values: None,
                },
            ]),
            ..Default::default()
        };
        assert!(selector_matches(Some(&exists), &labels(&[("x", "")])));
        assert!(!selector_matches(Some(&exists), &labels(&[])));
    }
}
