//! Events about a binding: Warnings through the Recorder (folded into series while a problem
//! repeats), one-off Normal outcomes written directly, under names the API server accepts.

use k8s_openapi::api::events::v1::Event as K8sEvent;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::PostParams;
use kube::runtime::events::{Event, EventType};
use kube::{Api, Resource};

use super::status;
use super::{Context, MANAGER};
use crate::crd::IAMRoleBinding;

pub(super) async fn publish(
    ctx: &Context,
    binding: &IAMRoleBinding,
    type_: EventType,
    reason: &str,
    action: &str,
    note: String,
) {
    let reference = binding.object_ref(&());
    let note = status::event_note(note);
    // The Recorder names its Events `<binding>.<hex time>`, which for the longest binding
    // names exceeds the 253 characters an Event name may have (the API server rejects it):
    // those bindings' Warnings are written one-off, under a shortened name, like Normal ones.
    let recorder_can_name = reference
        .name
        .as_deref()
        .is_some_and(|n| n.len() <= EVENT_NAME_OBJECT_MAX);
    let result = match type_ {
        // Warnings repeat while a problem lasts: the Recorder folds repeats into one Event
        // with a count. Normal events are one-off outcomes (created, updated, deleted), written
        // directly: the Recorder would keep each in its cache for 6 minutes and rescan the whole
        // cache on every publish, which a burst of thousands of creations makes large.
        EventType::Warning if recorder_can_name => {
            let event = Event {
                type_,
                reason: reason.into(),
                note: Some(note),
                action: action.into(),
                secondary: None,
            };
            ctx.recorder.publish(&event, &reference).await
        }
        _ => {
            let event = one_off_event(&reference, type_, reason, action, note, &ctx.event_instance);
            let api: Api<K8sEvent> = Api::namespaced(
                ctx.client.clone(),
                reference.namespace.as_deref().unwrap_or("default"),
            );
            api.create(&PostParams::default(), &event).await.map(drop)
        }
    };
    if let Err(e) = result {
        // Events are best effort; never fail a reconcile over one.
        tracing::warn!(error = %e, "cannot publish event");
    }
}

/// The longest object name that still leaves room for `.<16 hex digits>` in an Event name
/// (at most 253 characters, a DNS subdomain).
const EVENT_NAME_OBJECT_MAX: usize = 253 - 17;

/// `<object>.<hex time>` as the Recorder names Events, the object's name cut short when
/// needed so the whole stays a valid Event name (no label may end in `-` or `.`).
fn event_name(object: &str, nanos: i128) -> String {
    let mut end = object.len().min(EVENT_NAME_OBJECT_MAX);
    while !object.is_char_boundary(end) {
        end -= 1;
    }
    let prefix = object[..end].trim_end_matches(['-', '.']);
    format!("{prefix}.{nanos:x}")
}

/// An Event as the Recorder would write it the first time (events.k8s.io/v1).
fn one_off_event(
    reference: &k8s_openapi::api::core::v1::ObjectReference,
    type_: EventType,
    reason: &str,
    action: &str,
    note: String,
    instance: &str,
) -> K8sEvent {
    let now = jiff::Timestamp::now();
    K8sEvent {
        action: Some(action.into()),
        reason: Some(reason.into()),
        event_time: Some(MicroTime(now)),
        regarding: Some(reference.clone()),
        note: Some(note),
        metadata: kube::api::ObjectMeta {
            namespace: reference.namespace.clone(),
            name: Some(event_name(
                reference.name.as_deref().unwrap_or(MANAGER),
                now.as_nanosecond(),
            )),
            ..Default::default()
        },
        reporting_controller: Some(MANAGER.into()),
        reporting_instance: Some(instance.into()),
        type_: Some(
            match type_ {
                EventType::Normal => "Normal",
                EventType::Warning => "Warning",
            }
            .into(),
        ),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_off_events_name_the_binding_and_the_reporter() {
        let reference = k8s_openapi::api::core::v1::ObjectReference {
            name: Some("app".into()),
            namespace: Some("team".into()),
            ..Default::default()
        };
        let e = one_off_event(
            &reference,
            EventType::Normal,
            "RoleCreated",
            "Reconcile",
            "made".into(),
            "pod-1",
        );
        assert_eq!(e.metadata.namespace.as_deref(), Some("team"));
        assert!(e.metadata.name.unwrap().starts_with("app."));
        assert_eq!(e.regarding, Some(reference));
        assert_eq!(e.type_.as_deref(), Some("Normal"));
        assert_eq!(e.reason.as_deref(), Some("RoleCreated"));
        assert_eq!(e.reporting_controller.as_deref(), Some(MANAGER));
        assert_eq!(e.reporting_instance.as_deref(), Some("pod-1"));
        assert!(e.series.is_none() && e.event_time.is_some());
    }

    #[test]
    fn event_names_stay_valid_for_the_longest_object_names() {
        let nanos = 0x18ec_8b2d_849c_5a0e_i128;
        assert_eq!(event_name("app", nanos), "app.18ec8b2d849c5a0e");
        for object in [
            "a".repeat(253),
            format!(
                "{}-{}",
                "a".repeat(EVENT_NAME_OBJECT_MAX - 1),
                "b".repeat(20)
            ),
            format!(
                "{}.{}",
                "a".repeat(EVENT_NAME_OBJECT_MAX - 1),
                "b".repeat(20)
            ),
        ] {
            let name = event_name(&object, nanos);
            assert!(name.len() <= 253, "{} characters", name.len());
            assert!(!name.contains("-.") && !name.contains(".."), "{name}");
            assert!(name.ends_with(".18ec8b2d849c5a0e"));
        }
    }
}
