//! From the bytes of an AdmissionReview to the AdmissionReview to answer: parsing, exemptions,
//! modes, UPDATE handling. Pure (no I/O), so it is tested and fuzzed without a server.

use std::collections::HashSet;

use bumpalo::Bump;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation};
use kube::core::{DynamicObject, TypeMeta};

use crate::detect::json::{self, Json};
use crate::detect::{self, Evaluation, Mode, ReferenceView, RuleId, Target, Verdict};
use crate::exemption::State as ExemptionState;

mod request;
#[cfg(test)]
mod tests;

use request::{Meta, read_meta, read_request, str_field};

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
