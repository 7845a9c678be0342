//! The StaticKeyExemptions the audit holds, and its clock. They never change a judgement:
//! an exemption created, changed, deleted or crossing its expiry re-evaluates only which
//! exemption covers the workloads with findings it covers, and marks their namespaces'
//! reports out of date when that changed.

use std::collections::HashMap;
use std::sync::Arc;

use jiff::Timestamp;

use super::AuditState;
use crate::audit::kinds::WorkloadKind;
use crate::exemption::{self as ske, Reported};

impl AuditState {
    /// The exemption that applies to a workload now, if any covers it.
    pub(super) fn exemption_of(
        &self,
        kind: WorkloadKind,
        namespace: &str,
        name: &str,
    ) -> Option<Reported> {
        let all = self.exemptions.values().map(|e| &**e);
        ske::applicable(all, kind.as_str(), namespace, name, self.now).map(|a| a.reported())
    }

    /// Re-evaluates the exemption of the workloads with findings that `changed` (exemptions
    /// that were created, deleted, edited or crossed their expiry) cover; marks their
    /// namespaces when a result changes. Returns how many workloads were re-evaluated.
    fn reapply(&mut self, changed: &[Arc<ske::Exemption>]) -> usize {
        let mut namespaces: Vec<&str> = changed.iter().map(|e| e.namespace.as_str()).collect();
        namespaces.sort();
        namespaces.dedup();
        let mut covered: Vec<Arc<str>> = Vec::new();
        for ns in namespaces {
            for uid in self.failing.get(ns).into_iter().flatten() {
                if let Some(e) = self.entries.get(uid)
                    && changed
                        .iter()
                        .any(|x| x.covers(e.kind.as_str(), &e.namespace, &e.name))
                {
                    covered.push(uid.clone());
                }
            }
        }
        for uid in &covered {
            let Some(e) = self.entries.get(uid) else {
                continue;
            };
            let now = self.exemption_of(e.kind, &e.namespace, &e.name);
            if now != e.exemption {
                let ns = e.namespace.clone();
                if let Some(e) = self.entries.get_mut(uid) {
                    e.exemption = now;
                }
                self.dirty.insert(ns);
            }
        }
        covered.len()
    }

    /// A StaticKeyExemption was created or changed. Returns how many workloads it (or its
    /// previous version) covered and were re-evaluated; none is judged again.
    pub fn apply_exemption(&mut self, e: ske::Exemption) -> usize {
        let e = Arc::new(e);
        let old = self.exemptions.insert(e.name.clone(), e.clone());
        if old.as_deref() == Some(&*e) {
            return 0;
        }
        let changed: Vec<_> = old.into_iter().chain([e]).collect();
        self.reapply(&changed)
    }

    /// A StaticKeyExemption was deleted. Returns how many workloads were re-evaluated.
    pub fn delete_exemption(&mut self, name: &str) -> usize {
        match self.exemptions.remove(name) {
            Some(old) => self.reapply(&[old]),
            None => 0,
        }
    }

    /// The StaticKeyExemptions were listed anew: the whole set. Re-evaluates only the
    /// workloads covered by the ones that differ.
    pub fn set_exemptions(&mut self, all: impl IntoIterator<Item = ske::Exemption>) -> usize {
        let mut fresh: HashMap<String, Arc<ske::Exemption>> = HashMap::new();
        for e in all {
            fresh.insert(e.name.clone(), Arc::new(e));
        }
        let mut changed: Vec<Arc<ske::Exemption>> = Vec::new();
        for (name, old) in &self.exemptions {
            if fresh.get(name).is_none_or(|new| new != old) {
                changed.push(old.clone());
            }
        }
        for (name, new) in &fresh {
            if self.exemptions.get(name).is_none_or(|old| old != new) {
                changed.push(new.clone());
            }
        }
        self.exemptions = fresh;
        if changed.is_empty() {
            0
        } else {
            self.reapply(&changed)
        }
    }

    /// Moves the audit's clock to `now`: exemptions that expired since (or, if the clock went
    /// back, are active again) re-evaluate the workloads they cover. Returns how many.
    pub fn advance(&mut self, now: Timestamp) -> usize {
        let then = std::mem::replace(&mut self.now, now);
        let (from, to) = if then <= now {
            (then, now)
        } else {
            (now, then)
        };
        let crossed: Vec<Arc<ske::Exemption>> = self
            .exemptions
            .values()
            .filter(|e| from < e.expires && e.expires <= to)
            .cloned()
            .collect();
        if crossed.is_empty() {
            0
        } else {
            self.reapply(&crossed)
        }
    }

    /// The audit's clock.
    pub fn now(&self) -> Timestamp {
        self.now
    }

    /// The next time an exemption expires (when [`Self::advance`] must be called again).
    pub fn next_expiry(&self) -> Option<Timestamp> {
        self.exemptions
            .values()
            .map(|e| e.expires)
            .filter(|t| *t > self.now)
            .min()
    }

    /// StaticKeyExemptions held: (active, expired) at the audit's clock.
    pub fn exemption_counts(&self) -> (usize, usize) {
        let active = self
            .exemptions
            .values()
            .filter(|e| e.state_at(self.now) == ske::State::Active)
            .count();
        (active, self.exemptions.len() - active)
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{KEY_ID, w};
    use super::super::{AuditPolicy, Workload};
    use super::*;
    use crate::detect::{InMemoryView, RuleId};
    use serde_json::{Value, json};
    use std::collections::BTreeMap;

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn grant(name: &str, namespace: &str, workload: Option<&str>, expires: &str) -> ske::Exemption {
        ske::Exemption {
            name: name.into(),
            namespace: namespace.into(),
            kind: None,
            workload: workload.map(Into::into),
            granted_by: "platform@example.com".into(),
            reason: "TICKET-7 move to IRSA".into(),
            expires: t(expires),
        }
    }

    fn named<'a>(uid: &'a str, name: &'a str, body: &'a Value) -> Workload<'a> {
        Workload {
            name,
            ..w(uid, "1", body)
        }
    }

    fn state_of(e: &AuditState, uid: &str) -> Option<ske::State> {
        e.entries[uid].exemption.as_ref().map(|x| x.state)
    }

    /// Two leaky workloads and a clean one in "team", one leaky in "other".
    fn leaky_state(body: &Value, clean: &Value) -> AuditState {
        let view = InMemoryView::new();
        let policy = AuditPolicy::default();
        let mut state = AuditState::new();
        state.advance(t("2026-06-01T00:00:00Z"));
        state.upsert(&named("a", "a", body), true, &policy, &view);
        state.upsert(&named("b", "b", body), true, &policy, &view);
        state.upsert(&named("c", "c", clean), true, &policy, &view);
        let mut other = named("o", "a", body);
        other.namespace = "other";
        state.upsert(&other, true, &policy, &view);
        state.take_dirty();
        state
    }

    fn leaky_body() -> (Value, Value) {
        (
            json!({"spec": {"template": {"spec": {"containers": [
                {"name": "app", "env": [{"name": "AWS_ACCESS_KEY_ID", "value": KEY_ID}]}
            ]}}}}),
            json!({"spec": {"template": {"spec": {"containers": [{"name": "app"}]}}}}),
        )
    }

    #[test]
    fn an_exemption_reevaluates_only_what_it_covers_and_judges_nothing_again() {
        let (body, clean) = leaky_body();
        let mut state = leaky_state(&body, &clean);
        let judged = state.judged;
        // Covers "a" only: one workload re-evaluated, its namespace's report out of date.
        assert_eq!(
            state.apply_exemption(grant("x", "team", Some("a"), "2026-07-01T00:00:00Z")),
            1
        );
        assert_eq!(state_of(&state, "a"), Some(ske::State::Active));
        assert_eq!(state_of(&state, "b"), None);
        assert_eq!(state.take_dirty(), vec![Arc::<str>::from("team")]);
        let s = state.summary("team");
        assert_eq!((s.failing, s.exempted, s.expired), (1, 1, 0));
        assert_eq!(s.by_rule, BTreeMap::from([(RuleId::EnvStaticKey, 1)]));
        // The same exemption again (a resync): nothing.
        assert_eq!(
            state.apply_exemption(grant("x", "team", Some("a"), "2026-07-01T00:00:00Z")),
            0
        );
        // Widened to the namespace: both leaky workloads of "team" (not the clean one, not
        // "other").
        assert_eq!(
            state.apply_exemption(grant("x", "team", None, "2026-07-01T00:00:00Z")),
            2
        );
        assert_eq!(state_of(&state, "b"), Some(ske::State::Active));
        assert_eq!(state_of(&state, "o"), None);
        assert_eq!(state.take_dirty(), vec![Arc::<str>::from("team")]);
        // Deleted: enforced again.
        assert_eq!(state.delete_exemption("x"), 2);
        assert_eq!(state_of(&state, "a"), None);
        assert_eq!(state.summary("team").failing, 2);
        assert_eq!(state.take_dirty(), vec![Arc::<str>::from("team")]);
        assert_eq!(state.delete_exemption("x"), 0);
        assert_eq!(state.judged, judged, "exemptions re-judge nothing");
    }

    #[test]
    fn an_exemption_expires_when_the_clock_passes_it_and_not_before() {
        let (body, clean) = leaky_body();
        let mut state = leaky_state(&body, &clean);
        state.apply_exemption(grant("x", "team", Some("a"), "2026-06-01T00:00:10Z"));
        state.apply_exemption(grant("later", "other", None, "2026-06-02T00:00:00Z"));
        state.take_dirty();
        assert_eq!(state.next_expiry(), Some(t("2026-06-01T00:00:10Z")));
        assert_eq!(state.exemption_counts(), (2, 0));
        assert_eq!(state.advance(t("2026-06-01T00:00:09Z")), 0);
        assert!(state.take_dirty().is_empty());
        // At the expiry itself (expired from that instant on, as the webhook judges).
        assert_eq!(state.advance(t("2026-06-01T00:00:10Z")), 1);
        assert_eq!(state_of(&state, "a"), Some(ske::State::Expired));
        assert_eq!(state.take_dirty(), vec![Arc::<str>::from("team")]);
        let s = state.summary("team");
        assert_eq!((s.failing, s.exempted, s.expired), (2, 0, 1));
        assert_eq!(state.next_expiry(), Some(t("2026-06-02T00:00:00Z")));
        assert_eq!(state.exemption_counts(), (1, 1));
        // Nothing more to do until then.
        assert_eq!(state.advance(t("2026-06-01T12:00:00Z")), 0);
        assert!(state.take_dirty().is_empty());
        assert_eq!(state.advance(t("2026-06-03T00:00:00Z")), 1);
        assert_eq!(state.take_dirty(), vec![Arc::<str>::from("other")]);
        assert_eq!(state.next_expiry(), None);
        // An exemption already expired when it arrives is reported as expired at once.
        assert_eq!(
            state.apply_exemption(grant("past", "team", Some("b"), "2020-01-01T00:00:00Z")),
            1
        );
        assert_eq!(state_of(&state, "b"), Some(ske::State::Expired));
    }

    #[test]
    fn a_relist_of_exemptions_reevaluates_only_what_differs_and_new_judgements_see_them() {
        let (body, clean) = leaky_body();
        let mut state = leaky_state(&body, &clean);
        let a = grant("a", "team", Some("a"), "2026-07-01T00:00:00Z");
        let o = grant("o", "other", None, "2026-07-01T00:00:00Z");
        assert_eq!(state.set_exemptions([a.clone(), o.clone()]), 2);
        state.take_dirty();
        assert_eq!(state.set_exemptions([a.clone(), o.clone()]), 0);
        // "o" gone while the watch was down: only "other" is re-evaluated.
        assert_eq!(state.set_exemptions([a.clone()]), 1);
        assert_eq!(state.take_dirty(), vec![Arc::<str>::from("other")]);
        // A workload judged anew (a new resourceVersion, a new workload) carries its exemption.
        let view = InMemoryView::new();
        let mut again = named("a", "a", &body);
        again.resource_version = "2";
        state.upsert(&again, true, &AuditPolicy::default(), &view);
        assert_eq!(state_of(&state, "a"), Some(ske::State::Active));
        assert!(
            state.take_dirty().is_empty(),
            "same findings, same exemption"
        );
        // A clean workload keeps no exemption.
        assert_eq!(
            state.apply_exemption(grant("all", "team", None, "2026-07-01T00:00:00Z")),
            2
        );
        assert_eq!(state_of(&state, "c"), None);
    }
}
