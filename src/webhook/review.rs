//! From the bytes of an AdmissionReview to the AdmissionReview to answer: parsing, exemptions,
//! modes, UPDATE handling. Pure (no I/O), so it is tested and fuzzed without a server.

use std::collections::HashSet;

use bumpalo::Bump;
use k8s_openapi::api::authentication::v1::UserInfo;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation};
use kube::core::{DynamicObject, GroupVersionKind, GroupVersionResource, TypeMeta};

use crate::detect::json::{self, Json, Object};
use crate::detect::{self, Evaluation, Mode, ReferenceView, RuleId, Target, Verdict};
use crate::exemption::State as ExemptionState;

/// The largest arena a review starts with (a bigger body grows it as its tree is built).
const ARENA_START_MAX: usize = 64 * 1024;

/// The webhook's global settings.
#[derive(Debug, Clone)]
pub struct Policy {
    pub mode: Mode,
    pub exempt_namespaces: HashSet<String>,
    /// Kinds beyond the built-in workloads that embed pod templates.
    pub templates: std::sync::Arc<detect::PodTemplates>,
}

/// A body that is not an AdmissionReview (answered with HTTP 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReviewError {
    #[error("body is not JSON: {0}")]
    NotJson(String),
    #[error("body is not an AdmissionReview: {0}")]
    NotAReview(String),
    #[error("AdmissionReview has no request")]
    NoRequest,
}

impl ReviewError {
    /// Low-cardinality label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            ReviewError::NotJson(_) => "not_json",
            ReviewError::NotAReview(_) => "not_a_review",
            ReviewError::NoRequest => "no_request",
        }
    }
}

/// How a review was decided, for logs and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub uid: String,
    pub kind: String,
    pub namespace: String,
    pub name: String,
    /// `enforce`, `warn`, `audit`; `controller` for children created by a built-in controller
    /// (judged as audit); `exempt` / `skipped` when nothing was judged.
    pub mode: &'static str,
    pub verdict: Verdict,
    /// Rules of the findings (all findings, old ones included), one entry per rule.
    pub rules: Vec<RuleId>,
    /// Number of findings.
    pub findings: usize,
    /// Summaries of the findings, for the log.
    pub summaries: Vec<String>,
    /// The object could not be read.
    pub unreadable: Option<String>,
    /// The StaticKeyExemption that covered the workload, and whether it was still active.
    pub exemption: Option<(String, crate::exemption::State)>,
}

impl Outcome {
    fn new(uid: &str, kind: &str, namespace: &str, name: &str) -> Self {
        Self {
            uid: uid.into(),
            kind: kind.into(),
            namespace: namespace.into(),
            name: name.into(),
            mode: "skipped",
            verdict: Verdict::Allow,
            rules: Vec::new(),
            findings: 0,
            summaries: Vec::new(),
            unreadable: None,
            exemption: None,
        }
    }
}

/// Answers one AdmissionReview body.
///
/// The body is parsed into a borrowed, pruned JSON tree ([`Json`], [`super::prune::REVIEW`]):
/// only the request's identity and the parts of the objects that the rules read are built.
/// The answer is kube's `AdmissionResponse` for the request, as an `AdmissionReview`.
pub fn review(
    body: &[u8],
    policy: &Policy,
    refs: &dyn ReferenceView,
) -> Result<(AdmissionReview<DynamicObject>, Outcome), ReviewError> {
    // The pruned tree of a review takes about as many bytes as the body, usually fewer; a larger
    // one grows the arena by a few chunks.
    let arena = Bump::with_capacity(body.len().min(ARENA_START_MAX));
    let mut json =
        super::prune::parse(body, &arena).map_err(|e| ReviewError::NotJson(e.to_string()))?;
    // A custom resource's pod templates are wherever its entry says: such a review is parsed
    // again, whole (the pruning knows only the built-in kinds' fields).
    let whole = Bump::new();
    if custom_kind(&json, policy) {
        json = json::parse(body, &whole).map_err(|e| ReviewError::NotJson(e.to_string()))?;
    }
    let Json::Object(top) = &json else {
        return Err(ReviewError::NotAReview(format!(
            "expected an AdmissionReview object, found {}",
            json.type_name()
        )));
    };
    let request = match json::field(top, "request") {
        None | Some(Json::Null) => return Err(ReviewError::NoRequest),
        Some(Json::Object(r)) => r,
        Some(other) => {
            return Err(ReviewError::NotAReview(format!(
                "request: expected a mapping, found {}",
                other.type_name()
            )));
        }
    };
    let Some(uid) = json::field(request, "uid").and_then(Json::as_str) else {
        return Err(ReviewError::NotAReview(
            "request.uid: expected a string".into(),
        ));
    };
    let types = TypeMeta {
        api_version: str_field(top, "apiVersion")
            .unwrap_or("admission.k8s.io/v1")
            .to_string(),
        kind: str_field(top, "kind")
            .unwrap_or("AdmissionReview")
            .to_string(),
    };
    let namespace_hint = str_field(request, "namespace").unwrap_or("");
    match read_request(request, uid, types.clone()) {
        Ok((req, object, old_object)) => Ok(decide(
            &req,
            object,
            old_object,
            policy,
            refs,
            jiff::Timestamp::now(),
        )),
        Err(problem) => Ok(unreadable_request(
            uid,
            types,
            namespace_hint,
            &problem,
            policy,
            refs,
        )),
    }
}

/// Whether the review is of a kind that only the pod-templates list knows.
fn custom_kind(json: &Json<'_>, policy: &Policy) -> bool {
    let Some(kind) = json.get("request").and_then(|r| r.get("kind")) else {
        return false;
    };
    let (Some(group), Some(kind)) = (
        kind.get("group").and_then(Json::as_str),
        kind.get("kind").and_then(Json::as_str),
    ) else {
        return false;
    };
    policy.templates.find(group, kind).is_some()
}

fn str_field<'a>(obj: &'a Object<'_>, key: &str) -> Option<&'a str> {
    json::field(obj, key).and_then(Json::as_str)
}

/// An optional string field; `Err` names the field when it has another type.
fn opt_string<'a>(
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

type ReadRequest<'j, 'a> = (
    AdmissionRequest<DynamicObject>,
    Option<&'j Json<'a>>,
    Option<&'j Json<'a>>,
);

/// The request's fields as kube's `AdmissionRequest` (without the objects, which stay JSON for
/// the rules). `Err` says what cannot be read.
fn read_request<'j, 'a>(
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

/// A request that names its uid but cannot be read otherwise: answered, denied (allowed in
/// audit mode).
fn unreadable_request(
    uid: &str,
    types: TypeMeta,
    namespace: &str,
    problem: &str,
    policy: &Policy,
    refs: &dyn ReferenceView,
) -> (AdmissionReview<DynamicObject>, Outcome) {
    let mut outcome = Outcome::new(uid, "", namespace, "");
    let message = format!("hatrack: cannot read the reviewed request: {problem}");
    // Exempt namespaces are not consulted: a request that cannot be read is refused (outside
    // audit mode) wherever it claims to be.
    let mode = detect::labelled_mode(namespace, policy.mode, refs);
    outcome.mode = mode.as_str();
    outcome.unreadable = Some(message.clone());
    let mut response = AdmissionResponse::invalid(&message);
    response.uid = uid.to_string();
    response.types = types;
    if mode == Mode::Audit {
        response.allowed = true;
    } else {
        outcome.verdict = Verdict::Deny;
    }
    (response.into_review(), outcome)
}

/// The identities of Kubernetes' built-in workload controllers (kube-controller-manager, with
/// and without `--use-service-account-credentials`).
const CONTROLLER_USERS: [&str; 8] = [
    "system:kube-controller-manager",
    "system:serviceaccount:kube-system:deployment-controller",
    "system:serviceaccount:kube-system:replicaset-controller",
    "system:serviceaccount:kube-system:statefulset-controller",
    "system:serviceaccount:kube-system:daemon-set-controller",
    "system:serviceaccount:kube-system:job-controller",
    "system:serviceaccount:kube-system:cronjob-controller",
    "system:serviceaccount:kube-system:replication-controller",
];

/// What the review reads of an object's metadata.
struct Meta<'j> {
    name: Option<&'j str>,
    generate_name: Option<&'j str>,
    namespace: Option<&'j str>,
    controlled: bool,
}

/// Reads an object's metadata; `Err` says which field has the wrong type.
fn read_meta<'j>(object: &'j Json<'_>) -> Result<Meta<'j>, String> {
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

/// A Pod, ReplicaSet or Job that a built-in controller creates for its owner (a Deployment's
/// ReplicaSets and Pods, a CronJob's Jobs). The owner was judged when it was created or
/// updated; judging its children again would stop an existing violator from scaling or
/// rolling out, so their findings are only logged and counted.
fn created_by_controller(req: &AdmissionRequest<DynamicObject>, meta: &Meta<'_>) -> bool {
    let user = req.user_info.username.as_deref().unwrap_or("");
    CONTROLLER_USERS.contains(&user) && meta.controlled
}

/// Decides a request whose identity was read; `object`/`old_object` are its (pruned) objects.
fn decide(
    req: &AdmissionRequest<DynamicObject>,
    object: Option<&Json<'_>>,
    old_object: Option<&Json<'_>>,
    policy: &Policy,
    refs: &dyn ReferenceView,
    now: jiff::Timestamp,
) -> (AdmissionReview<DynamicObject>, Outcome) {
    let kind = req.kind.kind.as_str();
    let group = req.kind.group.as_str();
    let meta = object.map(read_meta);
    let object_namespace = match &meta {
        Some(Ok(m)) => m.namespace,
        _ => None,
    };
    let namespace = req
        .namespace
        .as_deref()
        .or(object_namespace)
        .unwrap_or("default");
    let mut outcome = Outcome::new(&req.uid, kind, namespace, &req.name);
    let response = AdmissionResponse::from(req);

    if matches!(req.operation, Operation::Delete | Operation::Connect)
        || !policy.templates.is_workload(group, kind)
    {
        return (response.into_review(), outcome);
    }
    let Some(mode) = detect::mode_in(namespace, policy.mode, &policy.exempt_namespaces, refs)
    else {
        outcome.mode = "exempt";
        return (response.into_review(), outcome);
    };
    outcome.mode = mode.as_str();

    let (Some(obj), Some(meta)) = (object, meta) else {
        return cannot_read(
            response,
            outcome,
            mode,
            format!("{kind} {namespace}/{}: the request has no object", req.name),
        );
    };
    let meta = match meta {
        Ok(meta) => meta,
        Err(e) => return cannot_read(response, outcome, mode, format!("object: {e}")),
    };
    let mode = if created_by_controller(req, &meta) {
        outcome.mode = "controller";
        Mode::Audit
    } else {
        mode
    };
    let name = if req.name.is_empty() {
        meta.name.or(meta.generate_name).unwrap_or("")
    } else {
        &req.name
    };
    outcome.name = name.to_string();
    let target = |object| Target {
        kind,
        namespace,
        name,
        object,
    };
    let evaluate = |object| detect::evaluate_with(&target(object), group, &policy.templates, refs);
    let eval = match evaluate(obj) {
        Ok(Some(eval)) => eval,
        Ok(None) => return (response.into_review(), outcome),
        Err(e) => return cannot_read(response, outcome, mode, e.to_string()),
    };
    // The old object of an UPDATE: if it cannot be read, every finding counts as new.
    let old: Option<Evaluation> = match (&req.operation, old_object) {
        (Operation::Update, Some(old)) => evaluate(old).ok().flatten(),
        _ => None,
    };
    let exemption = refs.exemption(kind, namespace, name, now);
    let decision = crate::exemption::apply(
        detect::decide(mode, &eval, old.as_ref()),
        exemption.as_ref().map(|(e, s)| (e, *s)),
        eval.findings.len(),
    );
    if let Some((_, ExemptionState::Active)) = &exemption {
        outcome.mode = "exemption";
    }
    outcome.exemption = exemption.map(|(e, s)| (e.name, s));

    let mut rules: Vec<RuleId> = eval.findings.iter().map(|f| f.rule).collect();
    rules.sort();
    rules.dedup();
    outcome.rules = rules;
    outcome.findings = eval.findings.len();
    outcome.summaries = eval.findings.iter().map(|f| f.summary()).collect();
    outcome.verdict = decision.verdict;

    let mut response = response;
    if !eval.findings.is_empty() {
        let ids: Vec<&str> = outcome.rules.iter().map(|r| r.as_str()).collect();
        response
            .audit_annotations
            .insert("static-keys".into(), ids.join(","));
    }
    if !decision.warnings.is_empty() {
        response.warnings = Some(decision.warnings);
    }
    if let Some(message) = decision.message {
        response = forbid(response, message);
    }
    (response.into_review(), outcome)
}

fn forbid(response: AdmissionResponse, message: String) -> AdmissionResponse {
    let mut response = response.deny(&message);
    response.result.code = 403;
    response.result.reason = "Forbidden".into();
    response
}

fn cannot_read(
    response: AdmissionResponse,
    mut outcome: Outcome,
    mode: Mode,
    detail: String,
) -> (AdmissionReview<DynamicObject>, Outcome) {
    let message = format!("hatrack: cannot read the object: {detail}");
    outcome.unreadable = Some(message.clone());
    if mode == Mode::Audit {
        return (response.into_review(), outcome);
    }
    outcome.verdict = Verdict::Deny;
    let mut response = response.deny(&message);
    response.result.code = 400;
    response.result.reason = "BadRequest".into();
    (response.into_review(), outcome)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::NoLookups;
    use serde_json::{Value, json};

    fn policy(mode: Mode) -> Policy {
        Policy {
            mode,
            exempt_namespaces: ["kube-system".to_string()].into(),
            templates: Default::default(),
        }
    }

    fn review_body(op: &str, ns: &str, object: Value, old: Option<Value>) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
                "kind": {"group": "apps", "version": "v1", "kind": "Deployment"},
                "resource": {"group": "apps", "version": "v1", "resource": "deployments"},
                "name": "app",
                "namespace": ns,
                "operation": op,
                "userInfo": {"username": "alice"},
                "object": object,
                "oldObject": old,
                "dryRun": false
            }
        }))
        .unwrap()
    }

    fn deployment(env: Value) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "app", "namespace": "team"},
               "spec": {"template": {"spec": {"serviceAccountName": "app", "containers": [{"name": "c", "env": env}]}}}})
    }

    fn response(body: &[u8], mode: Mode) -> (Value, Outcome) {
        let (review, outcome) = review(body, &policy(mode), &NoLookups).expect("a review");
        (serde_json::to_value(review).unwrap(), outcome)
    }

    /// A view holding StaticKeyExemptions (and nothing else).
    struct Exempting(Vec<crate::exemption::Exemption>);

    impl ReferenceView for Exempting {
        fn lookup(&self, _: detect::RefKind, _: &str, _: &str) -> detect::Lookup {
            detect::Lookup::Disabled
        }
        fn exemption(
            &self,
            kind: &str,
            namespace: &str,
            name: &str,
            now: jiff::Timestamp,
        ) -> Option<(crate::exemption::Exemption, ExemptionState)> {
            crate::exemption::applicable(&self.0, kind, namespace, name, now)
                .map(|a| (a.exemption.clone(), a.state))
        }
    }

    fn exempting(expires: &str) -> Exempting {
        Exempting(vec![crate::exemption::Exemption {
            name: "legacy-app".into(),
            namespace: "team".into(),
            kind: Some("Deployment".into()),
            workload: Some("app".into()),
            granted_by: "alice@platform".into(),
            reason: "TICKET-7 IRSA migration".into(),
            expires: expires.parse().unwrap(),
        }])
    }

    #[test]
    fn an_active_exemption_admits_with_a_warning_naming_who_why_and_until_when() {
        let body = review_body(
            "CREATE",
            "team",
            deployment(json!([{"name": "AWS_ACCESS_KEY_ID", "value": "x"}])),
            None,
        );
        let view = exempting("2999-01-01T00:00:00Z");
        let (review, outcome) = review(&body, &policy(Mode::Enforce), &view).unwrap();
        let r = serde_json::to_value(review).unwrap();
        assert_eq!(r["response"]["allowed"], true);
        let warning = r["response"]["warnings"][0].as_str().unwrap();
        for part in [
            "2999-01-01T00:00:00Z",
            "legacy-app",
            "alice@platform",
            "TICKET-7 IRSA migration",
            "1 static-key finding",
        ] {
            assert!(warning.contains(part), "{warning}");
        }
        assert_eq!(outcome.mode, "exemption");
        assert_eq!(
            outcome.exemption,
            Some(("legacy-app".into(), ExemptionState::Active))
        );
        assert_eq!(outcome.rules, [RuleId::EnvStaticKey]);
    }

    #[test]
    fn an_expired_exemption_is_enforced_and_the_denial_says_it_expired() {
        let body = review_body(
            "CREATE",
            "team",
            deployment(json!([{"name": "AWS_ACCESS_KEY_ID", "value": "x"}])),
            None,
        );
        let view = exempting("2020-01-01T00:00:00Z");
        let (review, outcome) = review(&body, &policy(Mode::Enforce), &view).unwrap();
        let r = serde_json::to_value(review).unwrap();
        assert_eq!(r["response"]["allowed"], false);
        let msg = r["response"]["status"]["message"].as_str().unwrap();
        assert!(
            msg.contains("StaticKeyExemption legacy-app")
                && msg.contains("expired at 2020-01-01T00:00:00Z"),
            "{msg}"
        );
        assert_eq!(outcome.verdict, Verdict::Deny);
        assert_eq!(
            outcome.exemption,
            Some(("legacy-app".into(), ExemptionState::Expired))
        );
    }

    #[test]
    fn denies_deployment_with_credential_env_and_echoes_the_uid() {
        let body = review_body(
            "CREATE",
            "team",
            deployment(json!([{"name": "AWS_ACCESS_KEY_ID", "value": "x"}])),
            None,
        );
        let (r, outcome) = response(&body, Mode::Enforce);
        assert_eq!(r["apiVersion"], "admission.k8s.io/v1");
        assert_eq!(r["kind"], "AdmissionReview");
        assert_eq!(r["response"]["uid"], "705ab4f5-6393-11e8-b7cc-42010a800002");
        assert_eq!(r["response"]["allowed"], false);
        assert_eq!(r["response"]["status"]["code"], 403);
        let msg = r["response"]["status"]["message"].as_str().unwrap();
        assert!(
            msg.contains("[env-static-key]") && msg.contains("ServiceAccount 'app'"),
            "{msg}"
        );
        assert_eq!(outcome.rules, [RuleId::EnvStaticKey]);
        assert_eq!(
            r["response"]["auditAnnotations"]["static-keys"],
            "env-static-key"
        );
    }

    #[test]
    fn warn_mode_allows_with_warnings_and_audit_mode_allows_silently() {
        let body = review_body(
            "CREATE",
            "team",
            deployment(json!([{"name": "AWS_SECRET_ACCESS_KEY", "value": "x"}])),
            None,
        );
        let (r, _) = response(&body, Mode::Warn);
        assert_eq!(r["response"]["allowed"], true);
        assert_eq!(r["response"]["warnings"].as_array().unwrap().len(), 1);
        let (r, outcome) = response(&body, Mode::Audit);
        assert_eq!(r["response"]["allowed"], true);
        assert!(r["response"].get("warnings").is_none());
        assert_eq!(outcome.mode, "audit");
        assert_eq!(outcome.findings, 1);
    }

    #[test]
    fn update_of_an_existing_violator_is_allowed_with_warnings() {
        let env = json!([{"name": "AWS_ACCESS_KEY_ID", "value": "x"}]);
        let mut new = deployment(env.clone());
        new["spec"]["replicas"] = json!(5);
        let body = review_body("UPDATE", "team", new, Some(deployment(env)));
        let (r, outcome) = response(&body, Mode::Enforce);
        assert_eq!(r["response"]["allowed"], true, "{r}");
        assert!(
            r["response"]["warnings"][0]
                .as_str()
                .unwrap()
                .contains("already present")
        );
        assert_eq!(outcome.verdict, Verdict::Warn);
    }

    #[test]
    fn update_adding_a_key_is_denied() {
        let old = deployment(json!([{"name": "AWS_ACCESS_KEY_ID", "value": "x"}]));
        let new = deployment(
            json!([{"name": "AWS_ACCESS_KEY_ID", "value": "x"}, {"name": "AWS_SECRET_ACCESS_KEY", "value": "y"}]),
        );
        let (r, _) = response(
            &review_body("UPDATE", "team", new, Some(old)),
            Mode::Enforce,
        );
        assert_eq!(r["response"]["allowed"], false);
        let msg = r["response"]["status"]["message"].as_str().unwrap();
        assert!(
            msg.contains("AWS_SECRET_ACCESS_KEY") && !msg.contains("env AWS_ACCESS_KEY_ID"),
            "{msg}"
        );
    }

    #[test]
    fn children_created_by_builtin_controllers_are_audited_not_denied() {
        let mut pod = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "app-7d9f", "namespace": "team", "ownerReferences": [
                {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "app-7d9f", "uid": "1", "controller": true}]},
            "spec": {"containers": [{"name": "c", "env": [{"name": "AWS_ACCESS_KEY_ID", "value": "x"}]}]}});
        let body = |pod: &Value, user: &str| {
            let mut v: Value =
                serde_json::from_slice(&review_body("CREATE", "team", pod.clone(), None)).unwrap();
            v["request"]["kind"] = json!({"group": "", "version": "v1", "kind": "Pod"});
            v["request"]["userInfo"] = json!({"username": user});
            serde_json::to_vec(&v).unwrap()
        };
        let (r, outcome) = response(
            &body(
                &pod,
                "system:serviceaccount:kube-system:replicaset-controller",
            ),
            Mode::Enforce,
        );
        assert_eq!(r["response"]["allowed"], true);
        assert_eq!(outcome.mode, "controller");
        assert_eq!(outcome.findings, 1);
        // The same Pod from a person, or from the controller without an owner, is denied.
        let (r, _) = response(&body(&pod, "alice"), Mode::Enforce);
        assert_eq!(r["response"]["allowed"], false);
        pod["metadata"]["ownerReferences"] = json!([]);
        let (r, _) = response(
            &body(
                &pod,
                "system:serviceaccount:kube-system:replicaset-controller",
            ),
            Mode::Enforce,
        );
        assert_eq!(r["response"]["allowed"], false);
    }

    #[test]
    fn exempt_namespaces_and_deletes_are_allowed_without_judging() {
        let bad = deployment(json!([{"name": "AWS_ACCESS_KEY_ID", "value": "x"}]));
        let (r, outcome) = response(
            &review_body("CREATE", "kube-system", bad.clone(), None),
            Mode::Enforce,
        );
        assert_eq!(r["response"]["allowed"], true);
        assert_eq!(outcome.mode, "exempt");
        let (r, _) = response(
            &review_body("DELETE", "team", Value::Null, Some(bad)),
            Mode::Enforce,
        );
        assert_eq!(r["response"]["allowed"], true);
    }

    #[test]
    fn unreadable_object_is_denied_with_its_uid_or_allowed_in_audit() {
        let body = review_body(
            "CREATE",
            "team",
            json!({"kind": "Deployment", "metadata": {"name": 7}}),
            None,
        );
        let (r, outcome) = response(&body, Mode::Enforce);
        assert_eq!(r["response"]["uid"], "705ab4f5-6393-11e8-b7cc-42010a800002");
        assert_eq!(r["response"]["allowed"], false);
        assert!(
            r["response"]["status"]["message"]
                .as_str()
                .unwrap()
                .contains("cannot read")
        );
        assert!(outcome.unreadable.is_some());
        let (r, _) = response(&body, Mode::Audit);
        assert_eq!(r["response"]["allowed"], true);

        let body = review_body("CREATE", "team", deployment(json!("not a list")), None);
        let (r, _) = response(&body, Mode::Enforce);
        assert_eq!(r["response"]["allowed"], false);
        assert!(
            r["response"]["status"]["message"]
                .as_str()
                .unwrap()
                .contains("env: expected an array")
        );
    }

    #[test]
    fn bodies_that_are_not_reviews_are_errors() {
        assert!(matches!(
            review(b"nope", &policy(Mode::Enforce), &NoLookups),
            Err(ReviewError::NotJson(_))
        ));
        assert!(matches!(
            review(
                b"{\"kind\":\"AdmissionReview\"}",
                &policy(Mode::Enforce),
                &NoLookups
            ),
            Err(ReviewError::NoRequest)
        ));
        assert!(matches!(
            review(b"[1,2]", &policy(Mode::Enforce), &NoLookups),
            Err(ReviewError::NotAReview(_))
        ));
        assert!(matches!(
            review(
                b"{\"request\":{\"uid\":5}}",
                &policy(Mode::Enforce),
                &NoLookups
            ),
            Err(ReviewError::NotAReview(_))
        ));
    }
}
