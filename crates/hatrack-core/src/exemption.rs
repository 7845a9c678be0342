//! Exemptions that expire: which StaticKeyExemption applies to a workload at a given time.
//! Pure (the time is an argument), shared by the webhook, `check` and the background audit.
//!
//! A workload is covered by an exemption of its namespace that names no workload, or names
//! its name (and its kind, when a kind is given). An exemption is active until its `expires`
//! time, then expired: the workload is judged again and the verdict says the exemption
//! expired. The most specific active exemption wins (a named workload over a whole
//! namespace, then the one that lasts longest); with none active, the latest expired one is
//! reported.

use jiff::Timestamp;

use crate::crd::StaticKeyExemption;
use crate::detect::{Decision, Verdict};

/// A StaticKeyExemption as the rules read it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Exemption {
    /// The StaticKeyExemption's name.
    pub name: String,
    pub namespace: String,
    /// The workload kind it is limited to, if any.
    pub kind: Option<String>,
    /// The workload it is limited to; `None`: the whole namespace.
    pub workload: Option<String>,
    pub granted_by: String,
    pub reason: String,
    pub expires: Timestamp,
}

/// Whether an exemption still holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub enum State {
    Active,
    Expired,
}

impl State {
    /// Metrics label.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Active => "active",
            State::Expired => "expired",
        }
    }
}

/// An exemption and its state, as reports show it (`check --format json`, the audit).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Reported {
    #[serde(flatten)]
    pub exemption: Exemption,
    pub state: State,
}

impl Applied<'_> {
    pub fn reported(&self) -> Reported {
        Reported {
            exemption: self.exemption.clone(),
            state: self.state,
        }
    }
}

/// The exemption that applies to a workload, and whether it is still active.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Applied<'a> {
    pub exemption: &'a Exemption,
    pub state: State,
}

impl Exemption {
    /// Reads a StaticKeyExemption (its schema already requires every field the API server
    /// stores).
    pub fn from_resource(r: &StaticKeyExemption) -> Self {
        Self {
            name: r.metadata.name.clone().unwrap_or_default(),
            namespace: r.spec.namespace.clone(),
            kind: r.spec.kind.clone().filter(|k| !k.is_empty()),
            workload: r.spec.name.clone().filter(|n| !n.is_empty()),
            granted_by: r.spec.granted_by.clone(),
            reason: r.spec.reason.clone(),
            expires: r.spec.expires.0,
        }
    }

    /// Whether it covers the workload `kind` `namespace`/`name` (at any time).
    pub fn covers(&self, kind: &str, namespace: &str, name: &str) -> bool {
        self.namespace == namespace
            && self.kind.as_deref().is_none_or(|k| k == kind)
            && self.workload.as_deref().is_none_or(|w| w == name)
    }

    pub fn state_at(&self, now: Timestamp) -> State {
        if now < self.expires {
            State::Active
        } else {
            State::Expired
        }
    }

    /// `StaticKeyExemption NAME (granted by WHO: WHY)`.
    fn describe(&self) -> String {
        format!(
            "StaticKeyExemption {} (granted by {}: {})",
            self.name, self.granted_by, self.reason
        )
    }
}

/// The exemption that applies to the workload at `now`, if any covers it.
pub fn applicable<'a>(
    exemptions: impl IntoIterator<Item = &'a Exemption>,
    kind: &str,
    namespace: &str,
    name: &str,
    now: Timestamp,
) -> Option<Applied<'a>> {
    let mut best: Option<Applied<'a>> = None;
    for e in exemptions {
        if !e.covers(kind, namespace, name) {
            continue;
        }
        let candidate = Applied {
            exemption: e,
            state: e.state_at(now),
        };
        let better = match best {
            None => true,
            Some(b) => rank(&candidate) > rank(&b),
        };
        if better {
            best = Some(candidate);
        }
    }
    best
}

/// Active beats expired; then a named workload beats a namespace; then the later expiry;
/// then the name (so the choice does not depend on the order exemptions were listed).
fn rank<'a>(a: &Applied<'a>) -> (bool, bool, Timestamp, std::cmp::Reverse<&'a str>) {
    (
        a.state == State::Active,
        a.exemption.workload.is_some(),
        a.exemption.expires,
        std::cmp::Reverse(a.exemption.name.as_str()),
    )
}

/// The decision on a workload once the StaticKeyExemption that covers it (if any) is applied:
/// an active one admits, saying who granted it, why and until when; an expired one changes
/// nothing but says so. `findings` is how many static-key findings the workload has.
pub fn apply(
    mut decision: Decision,
    exemption: Option<(&Exemption, State)>,
    findings: usize,
) -> Decision {
    match exemption {
        Some((e, State::Active)) => {
            decision.verdict = Verdict::Allow;
            decision.message = None;
            decision.warnings = vec![active_warning(e, findings)];
        }
        Some((e, State::Expired)) => {
            let notice = expired_notice(e);
            if let Some(m) = &mut decision.message {
                m.push_str(&format!(" ({notice})"));
            }
            decision.warnings.insert(0, notice);
        }
        None => {}
    }
    decision
}

/// What the client is told when an active exemption admits a workload's findings.
pub fn active_warning(e: &Exemption, findings: usize) -> String {
    let what = match findings {
        0 => "has no static-key findings".to_string(),
        1 => "has 1 static-key finding".to_string(),
        n => format!("has {n} static-key findings"),
    };
    // Who, why and until when first: the API server may cut long warnings.
    format!(
        "hatrack: admitted until {} by {}; the workload {what}",
        e.expires,
        e.describe()
    )
}

/// What the client is told when the exemption that covered a workload has expired.
pub fn expired_notice(e: &Exemption) -> String {
    format!(
        "hatrack: {} expired at {}; the workload is judged again",
        e.describe(),
        e.expires
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_active_exemption_admits_and_an_expired_one_only_says_so() {
        let e = ex("legacy", None, None, "2030-01-01T00:00:00Z");
        let denied = || Decision {
            verdict: Verdict::Deny,
            message: Some("denied".into()),
            warnings: vec!["old finding".into()],
            denied: Vec::new(),
        };
        let active = apply(denied(), Some((&e, State::Active)), 2);
        assert_eq!(active.verdict, Verdict::Allow);
        assert_eq!(active.message, None);
        assert_eq!(active.warnings, vec![active_warning(&e, 2)]);
        let expired = apply(denied(), Some((&e, State::Expired)), 2);
        assert_eq!(expired.verdict, Verdict::Deny);
        assert_eq!(
            expired.message,
            Some(format!("denied ({})", expired_notice(&e)))
        );
        assert_eq!(
            expired.warnings,
            vec![expired_notice(&e), "old finding".into()]
        );
        assert_eq!(apply(denied(), None, 2), denied());
    }

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn ex(name: &str, workload: Option<&str>, kind: Option<&str>, expires: &str) -> Exemption {
        Exemption {
            name: name.into(),
            namespace: "team".into(),
            kind: kind.map(Into::into),
            workload: workload.map(Into::into),
            granted_by: "platform@example.com".into(),
            reason: "TICKET-1 migration to IRSA".into(),
            expires: t(expires),
        }
    }

    const NOW: &str = "2026-06-01T00:00:00Z";

    #[test]
    fn covers_by_namespace_kind_and_name() {
        let e = ex("a", Some("app"), Some("Deployment"), "2027-01-01T00:00:00Z");
        assert!(e.covers("Deployment", "team", "app"));
        assert!(!e.covers("CronJob", "team", "app"));
        assert!(!e.covers("Deployment", "team", "other"));
        assert!(!e.covers("Deployment", "other", "app"));
        let ns = ex("b", None, None, "2027-01-01T00:00:00Z");
        assert!(ns.covers("Pod", "team", "anything"));
    }

    #[test]
    fn expires_exactly_at_the_deadline() {
        let e = ex("a", None, None, NOW);
        assert_eq!(e.state_at(t("2026-05-31T23:59:59Z")), State::Active);
        assert_eq!(e.state_at(t(NOW)), State::Expired);
    }

    #[test]
    fn an_active_exemption_wins_over_an_expired_one_and_a_named_one_over_the_namespace() {
        let old = ex("old", Some("app"), None, "2026-01-01T00:00:00Z");
        let ns = ex("ns", None, None, "2026-12-01T00:00:00Z");
        let named = ex("named", Some("app"), None, "2026-07-01T00:00:00Z");
        let all = [old.clone(), ns.clone(), named.clone()];
        let got = applicable(&all, "Deployment", "team", "app", t(NOW)).unwrap();
        assert_eq!((got.exemption, got.state), (&named, State::Active));
        // Order does not matter.
        let rev = [named.clone(), ns.clone(), old.clone()];
        assert_eq!(
            applicable(&rev, "Deployment", "team", "app", t(NOW))
                .unwrap()
                .exemption,
            &named
        );
        // Once the named one expires, the namespace's still holds.
        let later = t("2026-08-01T00:00:00Z");
        assert_eq!(
            applicable(&all, "Deployment", "team", "app", later)
                .unwrap()
                .exemption,
            &ns
        );
        // With every one expired, the latest expired is reported.
        let got = applicable(&all, "Deployment", "team", "app", t("2027-01-01T00:00:00Z")).unwrap();
        assert_eq!((got.exemption, got.state), (&named, State::Expired));
        assert!(applicable(&all, "Deployment", "other", "app", t(NOW)).is_none());
    }

    #[test]
    fn messages_name_who_why_and_until_when() {
        let e = ex("legacy-backup", Some("app"), None, "2026-07-01T00:00:00Z");
        let w = active_warning(&e, 2);
        for part in [
            "2026-07-01T00:00:00Z",
            "legacy-backup",
            "platform@example.com",
            "TICKET-1 migration to IRSA",
            "2 static-key findings",
        ] {
            assert!(w.contains(part), "{w}");
        }
        let n = expired_notice(&e);
        assert!(n.contains("expired at 2026-07-01T00:00:00Z"), "{n}");
        assert!(n.contains("platform@example.com"), "{n}");
    }

    #[test]
    fn reads_the_resource() {
        let r: StaticKeyExemption = serde_json::from_value(serde_json::json!({
            "apiVersion": "hatrack.dev/v1alpha1", "kind": "StaticKeyExemption",
            "metadata": {"name": "x"},
            "spec": {"namespace": "team", "name": "app", "grantedBy": "me", "reason": "why",
                     "expires": "2026-07-01T00:00:00Z"}
        }))
        .unwrap();
        let e = Exemption::from_resource(&r);
        assert_eq!(e.workload.as_deref(), Some("app"));
        assert_eq!(e.kind, None);
        assert_eq!(e.expires, t("2026-07-01T00:00:00Z"));
    }
}
