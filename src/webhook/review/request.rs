//! Reading an AdmissionReview's request and an object's metadata from the pruned JSON tree:
//! what is missing or of the wrong type is said, never guessed.

use k8s_openapi::api::authentication::v1::UserInfo;
use kube::core::admission::{AdmissionRequest, Operation};
use kube::core::{DynamicObject, GroupVersionKind, GroupVersionResource, TypeMeta};

use crate::detect::json::{self, Json, Object};

pub(super) fn str_field<'a>(obj: &'a Object<'_>, key: &str) -> Option<&'a str> {
    json::field(obj, key).and_then(Json::as_str)
}

/// An optional string field; `Err` names the field when it has another type.
pub(super) fn opt_string<'a>(
    obj: &'a Object<'_>,
    key: &str,
    at: impl std::fmt::Display,
) -> Result<Option<&'a str>, String> {
    match json::field(obj, key) {
        None | Some(Json::Null) => Ok(None),
        Some(Json::Str(s)) => Ok(Some(s)),
        Some(other) => Err(format!(
            "{at}{key}: expected a string, found {}",
            other.type_name()
        )),
    }
}

pub(super) type ReadRequest<'j, 'a> = (
    AdmissionRequest<DynamicObject>,
    Option<&'j Json<'a>>,
    Option<&'j Json<'a>>,
);

/// The request's fields as kube's `AdmissionRequest` (without the objects, which stay JSON for
/// the rules). `Err` says what cannot be read.
pub(super) fn read_request<'j, 'a>(
    request: &'j Object<'a>,
    uid: &str,
    types: TypeMeta,
) -> Result<ReadRequest<'j, 'a>, String> {
    let gvk = |key: &str, last: &str| -> Result<(String, String, String), String> {
        match json::field(request, key) {
            None | Some(Json::Null) => Ok(Default::default()),
            Some(Json::Object(o)) => {
                // The path is formatted only when a field has the wrong type.
                let field = |name: &str| {
                    opt_string(o, name, format_args!("request.{key}."))
                        .map(|s| s.unwrap_or("").to_string())
                };
                Ok((field("group")?, field("version")?, field(last)?))
            }
            Some(other) => Err(format!(
                "request.{key}: expected a mapping, found {}",
                other.type_name()
            )),
        }
    };
    let (group, version, kind) = gvk("kind", "kind")?;
    let (rgroup, rversion, resource) = gvk("resource", "resource")?;
    let operation = match opt_string(request, "operation", "request.")? {
        Some("CREATE") => Operation::Create,
        Some("UPDATE") => Operation::Update,
        Some("DELETE") => Operation::Delete,
        Some("CONNECT") => Operation::Connect,
        Some(other) => return Err(format!("request.operation: unknown operation {other:?}")),
        None => return Err("request.operation: missing".into()),
    };
    let username = match json::field(request, "userInfo") {
        None | Some(Json::Null) => None,
        Some(Json::Object(u)) => opt_string(u, "username", "request.userInfo.")?,
        Some(other) => {
            return Err(format!(
                "request.userInfo: expected a mapping, found {}",
                other.type_name()
            ));
        }
    };
    let dry_run = matches!(json::field(request, "dryRun"), Some(Json::Bool(true)));
    let object = json::field(request, "object").filter(|o| !o.is_null());
    let old_object = json::field(request, "oldObject").filter(|o| !o.is_null());
    let req = AdmissionRequest {
        types,
        uid: uid.to_string(),
        kind: GroupVersionKind::gvk(&group, &version, &kind),
        resource: GroupVersionResource::gvr(&rgroup, &rversion, &resource),
        sub_resource: opt_string(request, "subResource", "request.")?.map(str::to_string),
        request_kind: None,
        request_resource: None,
        request_sub_resource: None,
        name: opt_string(request, "name", "request.")?
            .unwrap_or("")
            .to_string(),
        namespace: opt_string(request, "namespace", "request.")?.map(str::to_string),
        operation,
        user_info: UserInfo {
            username: username.map(str::to_string),
            ..Default::default()
        },
        object: None,
        old_object: None,
        dry_run,
        options: None,
    };
    Ok((req, object, old_object))
}

/// What the review reads of an object's metadata.
pub(super) struct Meta<'j> {
    pub(super) name: Option<&'j str>,
    pub(super) generate_name: Option<&'j str>,
    pub(super) namespace: Option<&'j str>,
    pub(super) controlled: bool,
}

/// Reads an object's metadata; `Err` says which field has the wrong type.
pub(super) fn read_meta<'j>(object: &'j Json<'_>) -> Result<Meta<'j>, String> {
    let Json::Object(o) = object else {
        return Err(format!("expected a mapping, found {}", object.type_name()));
    };
    let meta = match json::field(o, "metadata") {
        None | Some(Json::Null) => {
            return Ok(Meta {
                name: None,
                generate_name: None,
                namespace: None,
                controlled: false,
            });
        }
        Some(Json::Object(m)) => m,
        Some(other) => {
            return Err(format!(
                "metadata: expected a mapping, found {}",
                other.type_name()
            ));
        }
    };
    let controlled = match json::field(meta, "ownerReferences") {
        None | Some(Json::Null) => false,
        Some(Json::Array(refs)) => {
            let mut controlled = false;
            for (i, r) in refs.iter().enumerate() {
                match r.get("controller") {
                    None | Some(Json::Null) => {}
                    Some(Json::Bool(b)) => controlled |= *b,
                    Some(other) => {
                        return Err(format!(
                            "metadata.ownerReferences[{i}].controller: expected a boolean, found {}",
                            other.type_name()
                        ));
                    }
                }
            }
            controlled
        }
        Some(other) => {
            return Err(format!(
                "metadata.ownerReferences: expected an array, found {}",
                other.type_name()
            ));
        }
    };
    Ok(Meta {
        name: opt_string(meta, "name", "metadata.")?,
        generate_name: opt_string(meta, "generateName", "metadata.")?,
        namespace: opt_string(meta, "namespace", "metadata.")?,
        controlled,
    })
}
