//! `hatrack audit`: what the webhook would say of every running workload of a live cluster,
//! printed as `hatrack check` prints it (same formats, same exit codes). The cluster's
//! StaticKeyExemptions apply as in the webhook and `check`: an active one admits (the result
//! names it), an expired one is enforced and the result says it expired.

use std::collections::HashSet;
use std::io::Write;
use std::path::PathBuf;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use kube::api::{Api, DynamicObject, ListParams, ObjectList};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

use super::kinds::{self, WorkloadKind};
use crate::check::{self, CheckReport, CheckResult, Format};
use crate::crd::StaticKeyExemption;
use crate::detect::{self, InMemoryView, Mode, PolicyArgs, RefKind};
use crate::exemption::Exemption;
use crate::webhook::cache::{configmap_facts, namespace_mode, secret_facts};

/// Flags of `hatrack audit`.
#[derive(Debug, Clone, clap::Args)]
pub struct AuditArgs {
    /// Output format (as `hatrack check`'s).
    #[arg(long, value_enum, default_value = "text", env = "HATRACK_CHECK_FORMAT")]
    pub format: Format,

    /// `--mode` and `--exempt-namespaces`, as the webhook's.
    #[command(flatten)]
    pub policy: PolicyArgs,

    /// Only this namespace (default: all).
    #[arg(long, short = 'n')]
    pub namespace: Option<String>,

    /// Kubeconfig file (default: $KUBECONFIG, ~/.kube/config, or the in-cluster account).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,

    /// Kubeconfig context (default: the current one).
    #[arg(long)]
    pub context: Option<String>,
}

/// Failures of `hatrack audit` before anything is judged (exit 2).
#[derive(Debug, thiserror::Error)]
pub enum OneShotError {
    #[error("kubeconfig {path}: {source}")]
    Kubeconfig {
        path: String,
        #[source]
        source: kube::config::KubeconfigError,
    },
    #[error("cannot configure the Kubernetes client: {0}")]
    Config(String),
    #[error("cannot list {what}: {source}")]
    List {
        what: &'static str,
        #[source]
        source: Box<kube::Error>,
    },
}

async fn client(args: &AuditArgs) -> Result<Client, OneShotError> {
    let options = KubeConfigOptions {
        context: args.context.clone(),
        ..Default::default()
    };
    let config = match &args.kubeconfig {
        Some(path) => {
            let kc = Kubeconfig::read_from(path).map_err(|source| OneShotError::Kubeconfig {
                path: path.display().to_string(),
                source,
            })?;
            Config::from_custom_kubeconfig(kc, &options)
                .await
                .map_err(|e| OneShotError::Config(e.to_string()))?
        }
        None if args.context.is_some() => Config::from_kubeconfig(&options)
            .await
            .map_err(|e| OneShotError::Config(e.to_string()))?,
        None => Config::infer()
            .await
            .map_err(|e| OneShotError::Config(e.to_string()))?,
    };
    Client::try_from(config).map_err(|e| OneShotError::Config(e.to_string()))
}

/// Lists every object of `api` in pages, handing each to `each` (pages are dropped as read).
async fn list_all<K>(
    api: &Api<K>,
    what: &'static str,
    mut each: impl FnMut(K),
) -> Result<(), OneShotError>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let mut params = ListParams::default().limit(500);
    loop {
        let page: ObjectList<K> = api.list(&params).await.map_err(|e| OneShotError::List {
            what,
            source: Box::new(e),
        })?;
        let next = page.metadata.continue_.clone().filter(|c| !c.is_empty());
        page.items.into_iter().for_each(&mut each);
        match next {
            Some(token) => params = params.continue_token(&token),
            None => return Ok(()),
        }
    }
}

fn scoped<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// The cluster's Secrets and ConfigMaps as facts, and its namespaces' modes.
async fn view(client: &Client, namespace: Option<&str>) -> Result<InMemoryView, OneShotError> {
    let mut view = InMemoryView::new();
    let key = |m: &kube::api::ObjectMeta| {
        (
            m.namespace.clone().unwrap_or_default(),
            m.name.clone().unwrap_or_default(),
        )
    };
    list_all(&scoped::<Secret>(client, namespace), "Secrets", |s| {
        let (ns, name) = key(&s.metadata);
        view.insert(RefKind::Secret, &ns, &name, secret_facts(&s));
    })
    .await?;
    list_all(&scoped::<ConfigMap>(client, namespace), "ConfigMaps", |c| {
        let (ns, name) = key(&c.metadata);
        view.insert(RefKind::ConfigMap, &ns, &name, configmap_facts(&c));
    })
    .await?;
    let mut modes = Vec::new();
    list_all(&Api::<Namespace>::all(client.clone()), "Namespaces", |n| {
        if let (Some(name), Some(mode)) = (n.metadata.name.clone(), namespace_mode(&n)) {
            modes.push((name, mode));
        }
    })
    .await?;
    for (name, mode) in modes {
        view.set_namespace_mode(&name, mode);
    }
    Ok(view)
}

/// The cluster's StaticKeyExemptions (none when their CRD is not installed).
async fn exemptions(client: &Client) -> Result<Vec<Exemption>, OneShotError> {
    let mut out = Vec::new();
    let api = Api::<StaticKeyExemption>::all(client.clone());
    match list_all(&api, "StaticKeyExemptions", |e| {
        out.push(Exemption::from_resource(&e))
    })
    .await
    {
        Err(OneShotError::List { source, .. }) if matches!(&*source, kube::Error::Api(s) if s.code == 404) => {
            Ok(Vec::new())
        }
        Err(e) => Err(e),
        Ok(()) => Ok(out),
    }
}

/// What decides a workload's result besides its own content.
struct Judging<'a> {
    view: &'a InMemoryView,
    exempt_namespaces: &'a HashSet<String>,
    mode: Mode,
    exemptions: &'a [Exemption],
    now: jiff::Timestamp,
}

/// Judges one listed workload as the webhook would, into `report`.
fn judge_into(report: &mut CheckReport, kind: WorkloadKind, o: &DynamicObject, j: &Judging<'_>) {
    let meta = &o.metadata;
    if !kinds::judged_itself_object(kind, meta, &o.data) {
        return;
    }
    let namespace = meta.namespace.as_deref().unwrap_or_default();
    let name = meta.name.as_deref().unwrap_or_default();
    let document = report.results.len() + report.errors.len() + 1;
    let file = format!("cluster:{}", kind.plural());
    let result = CheckResult::unjudged(&file, document, kind.as_str(), namespace, name);
    let mode = detect::mode_in(namespace, j.mode, j.exempt_namespaces, j.view);
    check::judge_workload(report, result, mode, j.exemptions, j.now, || {
        let arena = bumpalo::Bump::new();
        let json = detect::Json::from_value(&o.data, &arena);
        let target = detect::Target {
            kind: kind.as_str(),
            namespace,
            name,
            object: &json,
        };
        detect::evaluate(&target, j.view)
    });
}

/// Lists and judges everything; the report `check` would print.
pub async fn audit_cluster(client: &Client, args: &AuditArgs) -> Result<CheckReport, OneShotError> {
    let namespace = args.namespace.as_deref();
    let view = view(client, namespace).await?;
    let exempt_namespaces = args.policy.exempt_namespace_set();
    let exemptions = exemptions(client).await?;
    let judging = Judging {
        view: &view,
        exempt_namespaces: &exempt_namespaces,
        mode: args.policy.mode,
        exemptions: &exemptions,
        now: jiff::Timestamp::now(),
    };
    let mut report = CheckReport::default();
    for kind in WorkloadKind::ALL {
        let ar = kind.api_resource();
        let api = match namespace {
            Some(ns) => Api::<DynamicObject>::namespaced_with(client.clone(), ns, &ar),
            None => Api::<DynamicObject>::all_with(client.clone(), &ar),
        };
        list_all(&api, kind.plural(), |o| {
            judge_into(&mut report, kind, &o, &judging)
        })
        .await?;
    }
    Ok(report)
}

/// Runs `hatrack audit`; returns the exit code (`check`'s: 0, 1 something would be denied,
/// 2 the cluster could not be read).
pub async fn run_to(args: &AuditArgs, out: &mut dyn Write, err: &mut dyn Write, color: bool) -> u8 {
    let result = match client(args).await {
        Ok(c) => audit_cluster(&c, args).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(report) => {
            check::write_report(args.format, &report, &Default::default(), out, err, color);
            report.exit_code()
        }
        Err(e) => {
            let _ = writeln!(err, "hatrack audit: {e}");
            2
        }
    }
}
