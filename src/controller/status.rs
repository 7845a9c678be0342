//! Pure helpers for the status the controller writes.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::crd::IAMRoleBindingStatus;

/// Reasons of the Ready condition.
pub mod reason {
    pub const SYNCED: &str = "Synced";
    pub const ROLE_NOT_OWNED: &str = "RoleNotOwned";
    pub const OIDC_PROVIDER_MISSING: &str = "OidcProviderMissing";
    /// The role `spec.adoptRole` names does not exist.
    pub const ADOPTED_ROLE_MISSING: &str = "AdoptedRoleMissing";
    pub const AWS_ERROR: &str = "AwsError";
    pub const DELETING: &str = "Deleting";
    /// The reasons of a binding the judge refuses.
    pub use crate::judge::reason::*;
    /// An EKS Pod Identity association hatrack does not own holds a bound ServiceAccount.
    pub const FOREIGN_POD_IDENTITY_ASSOCIATION: &str = "ForeignPodIdentityAssociation";
}

/// The Ready condition, keeping `lastTransitionTime` when the status (True/False) is unchanged.
pub fn ready_condition(
    ready: bool,
    reason: &str,
    message: &str,
    generation: Option<i64>,
    previous: &[Condition],
    now: Time,
) -> Condition {
    let status = if ready { "True" } else { "False" };
    let last_transition_time = previous
        .iter()
        .find(|c| c.type_ == "Ready" && c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or(now);
    Condition {
        type_: "Ready".into(),
        status: status.into(),
        reason: reason.into(),
        // The API limits condition messages to 32768 bytes.
        message: truncate(message, 32_000),
        observed_generation: generation,
        last_transition_time,
    }
}

/// Whether a Ready=False reason needs someone to change something (the spec, another binding,
/// the role's owner, the cluster's OIDC provider, a foreign Pod Identity association) before the controller can make progress,
/// rather than a retry (AWS errors) or a deletion.
pub fn is_stalled(reason: &str) -> bool {
    matches!(
        reason,
        reason::INVALID_SPEC
            | reason::ROLE_NOT_OWNED
            | reason::SERVICE_ACCOUNT_CONFLICT
            | reason::OIDC_PROVIDER_MISSING
            | reason::GUARDRAIL_VIOLATION
            | reason::ACCOUNT_NOT_ALLOWED
            | reason::ACCOUNT_UNSUPPORTED
            | reason::ADOPTION_NOT_ALLOWED
            | reason::ADOPTED_ROLE_MISSING
            | crate::controller::accounts::credentials::ACCOUNT_INVALID
            | reason::FOREIGN_POD_IDENTITY_ASSOCIATION
            | GUARDRAIL_INVALID
    )
}

/// The reason of an IAMGuardrail's Ready=False.
pub const GUARDRAIL_INVALID: &str = "Invalid";

/// The `Stalled` condition of kstatus' convention (what Flux and `kubectl wait` tooling read as
/// Failed): present, True, only while the Ready condition is False for a reason that retries
/// cannot fix ([`is_stalled`]). It mirrors that Ready condition's reason and message.
pub fn stalled_condition(ready: &Condition, previous: &[Condition]) -> Option<Condition> {
    if ready.status != "False" || !is_stalled(&ready.reason) {
        return None;
    }
    let last_transition_time = previous
        .iter()
        .find(|c| c.type_ == "Stalled" && c.status == "True")
        .map(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| ready.last_transition_time.clone());
    Some(Condition {
        type_: "Stalled".into(),
        status: "True".into(),
        reason: ready.reason.clone(),
        message: ready.message.clone(),
        observed_generation: ready.observed_generation,
        last_transition_time,
    })
}

/// Ready, and Stalled when it applies, replacing both in `previous` (other types are kept).
pub fn with_ready(previous: &[Condition], ready: Condition) -> Vec<Condition> {
    let stalled = stalled_condition(&ready, previous);
    let mut out: Vec<Condition> = previous
        .iter()
        .filter(|c| c.type_ != "Ready" && c.type_ != "Stalled")
        .cloned()
        .collect();
    out.push(ready);
    out.extend(stalled);
    out
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// The most bytes the API server accepts in an events.k8s.io/v1 Event's `note` (longer notes
/// are rejected with 422, and the Event is lost).
pub const EVENT_NOTE_MAX_BYTES: usize = 1024;

/// An Event note the API server accepts: cut on a char boundary, with `…` marking the cut,
/// to at most [`EVENT_NOTE_MAX_BYTES`] bytes in all (the status condition keeps the whole
/// message).
pub fn event_note(note: String) -> String {
    if note.len() <= EVENT_NOTE_MAX_BYTES {
        return note;
    }
    truncate(&note, EVENT_NOTE_MAX_BYTES - '…'.len_utf8())
}

/// Whether writing `new` over `old` would change anything a reader cares about (so resyncs
/// that find nothing new write nothing).
pub fn status_changed(old: Option<&IAMRoleBindingStatus>, new: &IAMRoleBindingStatus) -> bool {
    let Some(old) = old else { return true };
    let strip = |s: &IAMRoleBindingStatus| {
        let mut s = s.clone();
        s.last_sync_time = None;
        s
    };
    strip(old) != strip(new)
}

/// The merge patch of a status write: the whole status (an empty association list as null,
/// since a merge patch keeps what it does not name), with the resourceVersion of the copy
/// it was worked out from as its precondition — the API server refuses it (409) when the
/// binding changed since.
pub fn merge_patch(
    resource_version: Option<&str>,
    new: &IAMRoleBindingStatus,
) -> serde_json::Value {
    let mut patch = serde_json::json!({ "status": new });
    if new.pod_identity_associations.is_empty() {
        patch["status"]["podIdentityAssociations"] = serde_json::Value::Null;
    }
    if let Some(version) = resource_version {
        patch["metadata"] = serde_json::json!({ "resourceVersion": version });
    }
    patch
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: i64) -> Time {
        Time(jiff::Timestamp::from_second(secs).unwrap())
    }

    #[test]
    fn transition_time_is_kept_while_status_holds() {
        let first = ready_condition(true, reason::SYNCED, "ok", Some(1), &[], t(10));
        let second = ready_condition(
            true,
            reason::SYNCED,
            "ok",
            Some(2),
            std::slice::from_ref(&first),
            t(20),
        );
        assert_eq!(second.last_transition_time, t(10));
        let third = ready_condition(false, reason::AWS_ERROR, "boom", Some(2), &[second], t(30));
        assert_eq!(third.last_transition_time, t(30));
        assert_eq!(third.status, "False");
    }

    #[test]
    fn stalled_accompanies_ready_false_only_for_reasons_a_retry_cannot_fix() {
        let ready = |ok: bool, r: &str| ready_condition(ok, r, "m", Some(3), &[], t(10));
        let conds = with_ready(&[], ready(false, reason::SERVICE_ACCOUNT_CONFLICT));
        let stalled = conds.iter().find(|c| c.type_ == "Stalled").unwrap();
        assert_eq!(
            (
                stalled.status.as_str(),
                stalled.reason.as_str(),
                stalled.observed_generation
            ),
            ("True", reason::SERVICE_ACCOUNT_CONFLICT, Some(3))
        );
        for (ok, r) in [
            (false, reason::AWS_ERROR),
            (false, reason::DELETING),
            (true, reason::SYNCED),
        ] {
            let c = with_ready(&conds, ready(ok, r));
            assert_eq!(c.len(), 1, "{r}: {c:?}");
            assert_eq!(c[0].type_, "Ready");
        }
        // Other condition types are kept; the Stalled transition time holds while stalled.
        let mut other = ready(true, reason::SYNCED);
        other.type_ = "Other".into();
        let first = with_ready(&[other], ready(false, reason::INVALID_SPEC));
        let later = ready_condition(false, reason::INVALID_SPEC, "m2", Some(4), &first, t(50));
        let second = with_ready(&first, later);
        assert_eq!(second.len(), 3);
        let s = second.iter().find(|c| c.type_ == "Stalled").unwrap();
        assert_eq!(
            (s.last_transition_time.clone(), s.message.as_str()),
            (t(10), "m2")
        );
    }

    #[test]
    fn long_messages_are_truncated_on_a_char_boundary() {
        let msg = "é".repeat(20_000);
        let c = ready_condition(false, reason::INVALID_SPEC, &msg, None, &[], t(0));
        assert!(c.message.len() <= 32_004);
    }

    #[test]
    fn event_notes_fit_the_api_servers_limit() {
        assert_eq!(event_note("short".into()), "short");
        let exact = "a".repeat(EVENT_NOTE_MAX_BYTES);
        assert_eq!(event_note(exact.clone()), exact);
        for long in [
            "a".repeat(5000),
            "é".repeat(3000),
            format!("a{}", "€".repeat(2000)),
        ] {
            let note = event_note(long.clone());
            assert!(note.len() <= EVENT_NOTE_MAX_BYTES, "{} bytes", note.len());
            assert!(note.len() >= EVENT_NOTE_MAX_BYTES - 6);
            assert!(long.starts_with(note.trim_end_matches('…')) && note.ends_with('…'));
        }
    }

    #[test]
    fn only_last_sync_time_changing_is_no_change() {
        let a = IAMRoleBindingStatus {
            role_name: Some("r".into()),
            last_sync_time: Some(t(1)),
            ..Default::default()
        };
        let mut b = a.clone();
        b.last_sync_time = Some(t(2));
        assert!(!status_changed(Some(&a), &b));
        b.role_name = Some("x".into());
        assert!(status_changed(Some(&a), &b));
        assert!(status_changed(None, &b));
    }

    #[test]
    fn a_status_patch_carries_its_copys_resource_version() {
        let new = IAMRoleBindingStatus {
            role_name: Some("r".into()),
            ..Default::default()
        };
        let patch = merge_patch(Some("42"), &new);
        assert_eq!(
            patch["metadata"],
            serde_json::json!({"resourceVersion": "42"})
        );
        assert_eq!(patch["status"]["roleName"], "r");
        assert!(patch["status"]["podIdentityAssociations"].is_null());
        assert!(patch["status"].get("podIdentityAssociations").is_some());
        assert!(merge_patch(None, &new).get("metadata").is_none());
    }
}
