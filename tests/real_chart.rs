//! The Helm chart installed into a real kube-apiserver (tests/support/cluster.rs): every object
//! it renders is accepted, `helm upgrade` with the same values changes nothing (no object's
//! resourceVersion moves), `helm uninstall` leaves only what docs/deploy.md's "Uninstalling" says is
//! kept, and value variants install the same way.
//!
//! The webhook configurations are stored with `webhook.url` set to a loopback port nobody
//! listens on: a configuration naming a Service would make the API server dial a cluster IP,
//! which does not exist here. The default, Service-based configuration goes through the real
//! server only as a dry run (nothing stored, nothing dialled).
//!
//! The tests of this file run one at a time (see [`serial`]): while a release is installed its
//! ValidatingWebhookConfiguration (failurePolicy Fail, an unreachable URL) makes the API
//! server refuse Deployments in every namespace but that release's own, so another release
//! could not be installed beside it. Each release is uninstalled when its test ends, also when
//! the test fails ([`Release`]'s Drop).

use hatrack_test_support as support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use support::cluster::{TestCluster, cluster, kubectl, run, temp_file};
use support::moto::free_port;
use tokio::sync::{Mutex, MutexGuard};

const CRDS: [&str; 3] = [
    "iamrolebindings.hatrack.dev",
    "iamguardrails.hatrack.dev",
    // The background audit's PolicyReports (charts/hatrack/crds/wgpolicyk8s.io.yaml).
    "policyreports.wgpolicyk8s.io",
];

/// The values the install command of README.md and docs/deploy.md passes (the account ID as a
/// string, like `--set-string`).
const REQUIRED: [&str; 8] = [
    "--set",
    "cluster.name=prod-eu",
    "--set",
    "cluster.region=eu-west-1",
    "--set-string",
    "cluster.accountId=011122223333",
    "--set",
    "cluster.oidcIssuer=https://oidc.eks.eu-west-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE",
];

/// One test at a time: see the module documentation.
async fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::const_new(());
    SERIAL.lock().await
}

fn chart() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("charts/hatrack")
}

fn values_file(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/chart")
        .join(name)
        .display()
        .to_string()
}

/// `helm <args>` against the test cluster as administrator.
fn helm(cluster: &TestCluster, args: &[&str]) -> Command {
    let mut cmd = support::cluster::helm(cluster);
    cmd.args(args);
    cmd
}

/// `https://127.0.0.1:PORT` where nothing listens: the API server may store it, and a call
/// to it fails at once (connection refused) instead of reaching anything.
fn unreachable_url() -> String {
    let port = free_port();
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "something listens on 127.0.0.1:{port}"
    );
    format!("https://127.0.0.1:{port}")
}

/// An installed release; uninstalled on drop if the test did not (a failed test must not
/// leave a webhook configuration behind for the next one).
struct Release<'a> {
    cluster: &'a TestCluster,
    name: String,
    namespace: String,
    installed: bool,
}

impl<'a> Release<'a> {
    /// `helm install NAME charts/hatrack -n NAMESPACE --wait=false <args>`; panics with helm's
    /// output when it fails.
    fn install(cluster: &'a TestCluster, name: &str, namespace: &str, args: &[&str]) -> Self {
        let (ok, out, err) = run(helm(
            cluster,
            &[
                "install",
                name,
                chart().to_str().expect("utf-8 path"),
                "--namespace",
                namespace,
                "--wait=false",
            ],
        )
        .args(args));
        if !ok {
            // A failed install keeps what it created: remove it before failing.
            let _ = run(&mut helm(
                cluster,
                &["uninstall", name, "--namespace", namespace],
            ));
            panic!("helm install {name} -n {namespace} {args:?}:\n{out}{err}");
        }
        assert!(out.contains("STATUS: deployed"), "{out}");
        Release {
            cluster,
            name: name.to_string(),
            namespace: namespace.to_string(),
            installed: true,
        }
    }

    fn upgrade(&self, args: &[&str]) {
        let (ok, out, err) = run(helm(
            self.cluster,
            &[
                "upgrade",
                &self.name,
                chart().to_str().expect("utf-8 path"),
                "--namespace",
                &self.namespace,
                "--wait=false",
            ],
        )
        .args(args));
        assert!(ok, "helm upgrade {} {args:?}:\n{out}{err}", self.name);
        assert!(out.contains("STATUS: deployed"), "{out}");
    }

    fn manifest(&self) -> String {
        let (ok, out, err) = run(&mut helm(
            self.cluster,
            &[
                "get",
                "manifest",
                &self.name,
                "--namespace",
                &self.namespace,
            ],
        ));
        assert!(ok, "helm get manifest {}: {err}", self.name);
        out
    }

    /// Every object of the release as stored now: `Kind/namespace/name` → (resourceVersion,
    /// generation). Panics when an object of the manifest does not exist.
    fn objects(&self) -> BTreeMap<String, (String, Option<i64>)> {
        let manifest = self.manifest();
        let file = temp_file(
            self.cluster,
            &format!("manifest-{}-{}.yaml", self.namespace, self.name),
            &manifest,
        );
        let (ok, out, err) = run(kubectl(self.cluster)
            .args(["get", "-o", "json", "-f"])
            .arg(&file));
        assert!(ok, "kubectl get -f <manifest of {}>: {err}", self.name);
        let rendered =
            manifest.matches("\nkind: ").count() + usize::from(manifest.starts_with("kind: "));
        let objects: BTreeMap<_, _> = items(&out)
            .iter()
            .map(|o| {
                let meta = &o["metadata"];
                (
                    key(o),
                    (
                        meta["resourceVersion"]
                            .as_str()
                            .unwrap_or_default()
                            .to_string(),
                        meta["generation"].as_i64(),
                    ),
                )
            })
            .collect();
        assert_eq!(
            objects.len(),
            rendered,
            "objects of {}: {objects:?}",
            self.name
        );
        objects
    }

    /// A server-side apply of the same rendering (helm 4, or a GitOps tool applying it) finds
    /// nothing to change and no field to fight over: no field the chart sets is rewritten by
    /// the API server's defaulting.
    fn assert_server_side_apply_changes_nothing(&self, args: &[&str]) {
        let (ok, rendered, err) = run(helm(
            self.cluster,
            &[
                "template",
                &self.name,
                chart().to_str().expect("utf-8 path"),
                "--namespace",
                &self.namespace,
            ],
        )
        .args(args));
        assert!(ok, "helm template: {err}");
        let file = temp_file(
            self.cluster,
            &format!("rendered-{}-{}.yaml", self.namespace, self.name),
            &rendered,
        );
        let (ok, out, err) = run(kubectl(self.cluster)
            .args(["diff", "--server-side", "-f"])
            .arg(&file));
        assert!(
            ok && out.is_empty(),
            "kubectl diff --server-side of the release's own rendering:\n{out}{err}"
        );
    }

    /// The Pods the Deployments would make (no controller-manager makes them here) pass the
    /// real Pod admission — PodSecurity `restricted`, ServiceAccount, Priority — as a dry run.
    fn assert_pods_admitted_as_restricted(&self) {
        let (ok, out, err) = run(kubectl(self.cluster).args([
            "label",
            "--overwrite",
            "namespace",
            &self.namespace,
            "pod-security.kubernetes.io/enforce=restricted",
            "pod-security.kubernetes.io/enforce-version=latest",
        ]));
        assert!(ok, "{out}{err}");
        let deployments = get_json(self.cluster, &["get", "deployments", "-n", &self.namespace]);
        let deployments = deployments["items"].as_array().expect("deployments");
        assert_eq!(deployments.len(), 2);
        for d in deployments {
            let name = d["metadata"]["name"].as_str().expect("name");
            let template = &d["spec"]["template"];
            let pod = serde_json::json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {
                    "generateName": format!("{name}-"),
                    "namespace": self.namespace,
                    "labels": template["metadata"]["labels"],
                },
                "spec": template["spec"],
            });
            let file = temp_file(
                self.cluster,
                &format!("pod-{}-{name}.json", self.namespace),
                &pod.to_string(),
            );
            let (ok, out, err) = run(kubectl(self.cluster)
                .args(["create", "--dry-run=server", "-o", "name", "-f"])
                .arg(&file));
            assert!(ok, "a Pod of {name} is refused: {out}{err}");
            assert!(!err.contains("Warning"), "a Pod of {name}: {err}");
        }
    }

    /// `helm uninstall`, then: no object of the release's manifest is left, and nothing in
    /// its namespace or cluster-wide with its labels, except `kept` (`Kind/namespace/name`).
    fn uninstall(mut self, kept: &[String]) {
        let manifest = self.manifest();
        self.installed = false;
        let (ok, out, err) = run(&mut helm(
            self.cluster,
            &["uninstall", &self.name, "--namespace", &self.namespace],
        ));
        assert!(ok, "helm uninstall {}: {out}{err}", self.name);

        let file = temp_file(
            self.cluster,
            &format!("uninstalled-{}-{}.yaml", self.namespace, self.name),
            &manifest,
        );
        let (ok, out, err) = run(kubectl(self.cluster)
            .args(["get", "--ignore-not-found", "-o", "name", "-f"])
            .arg(&file));
        assert!(ok, "{err}");
        assert_eq!(out.trim(), "", "left by helm uninstall {}", self.name);

        let mut left: BTreeSet<String> = namespace_contents(self.cluster, &self.namespace);
        left.extend(
            labelled_cluster_wide(
                self.cluster,
                &format!("app.kubernetes.io/instance={}", self.name),
            )
            .into_iter()
            .filter(|k| k.contains(&self.namespace)),
        );
        let kept: BTreeSet<String> = kept.iter().cloned().collect();
        assert_eq!(left, kept, "what helm uninstall {} left", self.name);
    }
}

impl Drop for Release<'_> {
    fn drop(&mut self) {
        if self.installed {
            let _ = run(&mut helm(
                self.cluster,
                &["uninstall", &self.name, "--namespace", &self.namespace],
            ));
        }
    }
}

/// The objects of `kubectl get -o json` output (a List or one object).
fn items(json: &str) -> Vec<Value> {
    let v: Value = serde_json::from_str(json).expect("kubectl JSON");
    match v["items"].as_array() {
        Some(items) => items.clone(),
        None => vec![v],
    }
}

fn key(o: &Value) -> String {
    format!(
        "{}/{}/{}",
        o["kind"].as_str().unwrap_or_default(),
        o["metadata"]["namespace"].as_str().unwrap_or_default(),
        o["metadata"]["name"].as_str().unwrap_or_default()
    )
}

fn resource_types(cluster: &TestCluster, namespaced: bool) -> String {
    let (ok, out, err) = run(kubectl(cluster).args([
        "api-resources",
        "--verbs=list",
        &format!("--namespaced={namespaced}"),
        "-o",
        "name",
    ]));
    assert!(ok, "kubectl api-resources: {err}");
    out.split_whitespace().collect::<Vec<_>>().join(",")
}

/// Everything stored in `namespace`, as `Kind/namespace/name`, except what the cluster itself
/// keeps in every namespace (its `default` ServiceAccount and `kube-root-ca.crt`) and, on a
/// cluster of your own (`HATRACK_TEST_KUBECONFIG`), what its controllers made from the
/// release and its garbage collector removes (Pods, ReplicaSets, EndpointSlices, Events).
fn namespace_contents(cluster: &TestCluster, namespace: &str) -> BTreeSet<String> {
    const MADE_BY_THE_CLUSTER: [&str; 6] = [
        "Event/",
        "Pod/",
        "ReplicaSet/",
        "EndpointSlice/",
        "Endpoints/",
        "ControllerRevision/",
    ];
    let (ok, out, err) = run(kubectl(cluster).args([
        "get",
        &resource_types(cluster, true),
        "-n",
        namespace,
        "-o",
        "json",
    ]));
    assert!(ok, "list namespace {namespace}: {err}");
    items(&out)
        .iter()
        .map(key)
        .filter(|k| {
            *k != format!("ServiceAccount/{namespace}/default")
                && *k != format!("ConfigMap/{namespace}/kube-root-ca.crt")
                && !MADE_BY_THE_CLUSTER.iter().any(|p| k.starts_with(p))
        })
        .collect()
}

/// Cluster-scoped objects with `selector`, as `Kind//name`.
fn labelled_cluster_wide(cluster: &TestCluster, selector: &str) -> BTreeSet<String> {
    let (ok, out, err) = run(kubectl(cluster).args([
        "get",
        &resource_types(cluster, false),
        "-l",
        selector,
        "-o",
        "json",
    ]));
    assert!(ok, "list cluster-scoped objects: {err}");
    items(&out).iter().map(key).collect()
}

/// Objects whose resourceVersion or generation differ between two snapshots, or that are in
/// only one of them: `Kind/namespace/name (before -> after)`.
fn changed(
    before: &BTreeMap<String, (String, Option<i64>)>,
    after: &BTreeMap<String, (String, Option<i64>)>,
) -> Vec<String> {
    let keys: BTreeSet<&String> = before.keys().chain(after.keys()).collect();
    keys.into_iter()
        .filter(|k| before.get(*k) != after.get(*k))
        .map(|k| format!("{k} ({:?} -> {:?})", before.get(k), after.get(k)))
        .collect()
}

fn kinds(objects: &BTreeMap<String, (String, Option<i64>)>) -> Vec<String> {
    let mut kinds: Vec<String> = objects
        .keys()
        .map(|k| k.split('/').next().unwrap_or_default().to_string())
        .collect();
    kinds.sort();
    kinds
}

/// The first container's args of a Deployment.
fn container_args(deployment: &Value) -> Vec<String> {
    deployment["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .expect("container args")
        .iter()
        .filter_map(|a| a.as_str().map(str::to_string))
        .collect()
}

fn get_json(cluster: &TestCluster, args: &[&str]) -> Value {
    let (ok, out, err) = run(kubectl(cluster).args(args).args(["-o", "json"]));
    assert!(ok, "kubectl {args:?}: {err}");
    serde_json::from_str(&out).expect("kubectl JSON")
}

fn assert_crds_established(cluster: &TestCluster) {
    for crd in CRDS {
        let crd = get_json(cluster, &["get", "crd", crd]);
        let established = crd["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Established" && c["status"] == "True");
        assert!(established, "{crd}");
    }
}

/// Install, upgrade with the same values (nothing changes), uninstall (nothing left): the
/// check every values variant goes through. Returns the kinds the release created.
async fn install_upgrade_uninstall(prefix: &str, release: &str, args: &[&str]) -> Vec<String> {
    let cluster = cluster().await;
    let ns = cluster.namespace(prefix).await;
    let r = Release::install(cluster, release, &ns, args);
    let before = r.objects();
    eprintln!("{prefix}: helm install created {before:#?}");
    r.assert_server_side_apply_changes_nothing(args);
    r.assert_pods_admitted_as_restricted();
    r.upgrade(args);
    assert_eq!(
        changed(&before, &r.objects()),
        Vec::<String>::new(),
        "helm upgrade with the same values changed these objects"
    );
    r.uninstall(&[]);
    kinds(&before)
}

/// The documented install (release `hatrack`, the required values) plus `webhook.url`: every object
/// is created; the webhook pod's certificate step, run as the webhook's ServiceAccount, makes
/// the Secret and writes the caBundle; `helm upgrade` (same values, and docs/deploy.md's
/// `--reuse-values`) changes nothing; a changed value touches only its object and keeps the
/// caBundle; `helm uninstall` leaves the CRDs, and the certificate Secret and the leader
/// Lease that hatrack's pods create (here: their first steps, run as their ServiceAccounts),
/// as docs/deploy.md says.
#[tokio::test]
async fn default_install_upgrades_without_change_and_uninstalls_to_what_the_readme_keeps() {
    let _serial = serial().await;
    let cluster = cluster().await;
    let ns = cluster.namespace("chart-default").await;
    let url = unreachable_url();
    let url_value = format!("webhook.url={url}");
    let mut args: Vec<&str> = REQUIRED.to_vec();
    args.extend(["--set", &url_value]);

    let release = Release::install(cluster, "hatrack", &ns, &args);
    assert_crds_established(cluster);
    let installed = release.objects();
    release.assert_server_side_apply_changes_nothing(&args);
    release.assert_pods_admitted_as_restricted();
    eprintln!("helm install created {installed:#?}");
    assert_eq!(
        kinds(&installed),
        [
            "ClusterRole",
            "ClusterRole",
            "ClusterRoleBinding",
            "ClusterRoleBinding",
            "ConfigMap",
            "Deployment",
            "Deployment",
            "IAMGuardrail",
            "PodDisruptionBudget",
            "Role",
            "Role",
            "RoleBinding",
            "RoleBinding",
            "Service",
            "Service",
            "ServiceAccount",
            "ServiceAccount",
            "ValidatingWebhookConfiguration",
        ]
    );
    let vwc_name = format!("hatrack-{ns}");
    let vwc = get_json(
        cluster,
        &["get", "validatingwebhookconfiguration", &vwc_name],
    );
    let webhooks = vwc["webhooks"].as_array().expect("webhooks");
    let urls: Vec<&str> = webhooks
        .iter()
        .map(|w| w["clientConfig"]["url"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        urls,
        [
            format!("{url}/validate/workloads"),
            // The system namespaces' entry (failurePolicy Ignore).
            format!("{url}/validate/workloads"),
            format!("{url}/validate/iamrolebindings")
        ]
    );
    for w in webhooks {
        assert!(w["clientConfig"]["service"].is_null(), "{w}");
        let system = w["name"] == "system-workloads.hatrack.dev";
        assert_eq!(w["failurePolicy"], if system { "Ignore" } else { "Fail" });
    }

    // What a webhook pod does first with self-managed certificates (the default): create the
    // certificate Secret and write the caBundle, with the chart's flags, as the chart's
    // webhook ServiceAccount (so with exactly the chart's RBAC).
    {
        use clap::Parser;
        #[derive(Parser)]
        struct Webhook {
            #[command(flatten)]
            webhook: hatrack::webhook::WebhookArgs,
        }
        let deployment = get_json(
            cluster,
            &["get", "deployment", "hatrack-webhook", "-n", &ns],
        );
        let args = container_args(&deployment);
        let parsed = Webhook::try_parse_from(
            std::iter::once("hatrack-webhook".to_string()).chain(args[1..].iter().cloned()),
        )
        .unwrap_or_else(|e| panic!("webhook flags {args:?}: {e}"));
        let mut config = parsed.webhook.certs.config();
        // POD_NAMESPACE in the pod (downward API).
        config.namespace = ns.clone();
        let sa = deployment["spec"]["template"]["spec"]["serviceAccountName"]
            .as_str()
            .expect("webhook ServiceAccount");
        let client = cluster.service_account_client(&ns, sa).await;
        hatrack::certs::ensure(&client, &config)
            .await
            .expect("the webhook's certificate step, as its ServiceAccount");
        assert_eq!(config.secret_name, "hatrack-webhook-tls");
        let vwc = get_json(
            cluster,
            &["get", "validatingwebhookconfiguration", &vwc_name],
        );
        for w in vwc["webhooks"].as_array().expect("webhooks") {
            assert!(
                w["clientConfig"]["caBundle"]
                    .as_str()
                    .is_some_and(|b| !b.is_empty()),
                "no caBundle written: {w}"
            );
        }
    }

    // What a controller pod does first: take the leader-election Lease, with the chart's
    // flags, as the chart's controller ServiceAccount (then release it: the work is empty).
    {
        use clap::Parser;
        #[derive(Parser)]
        struct Controller {
            #[command(flatten)]
            controller: hatrack::controller::ControllerArgs,
        }
        let deployment = get_json(
            cluster,
            &["get", "deployment", "hatrack-controller", "-n", &ns],
        );
        let args = container_args(&deployment);
        let parsed = Controller::try_parse_from(
            std::iter::once("hatrack-controller".to_string()).chain(args[1..].iter().cloned()),
        )
        .unwrap_or_else(|e| panic!("controller flags {args:?}: {e}"));
        assert!(parsed.controller.leader.leader_election);
        let mut config = parsed.controller.leader.lease_config();
        // POD_NAMESPACE and POD_NAME in the pod (downward API).
        config.namespace = ns.clone();
        config.identity = "hatrack-controller-0".into();
        assert_eq!(config.name, "hatrack-controller");
        let sa = deployment["spec"]["template"]["spec"]["serviceAccountName"]
            .as_str()
            .expect("controller ServiceAccount");
        let client = cluster.service_account_client(&ns, sa).await;
        let led = hatrack::leader::run_as_leader(
            client,
            config,
            std::future::pending::<()>(),
            |_| async {},
        )
        .await
        .expect("leader election as the controller's ServiceAccount");
        assert_eq!(led, Some(()));
    }

    let before = release.objects();
    release.upgrade(&args);
    assert_eq!(
        changed(&before, &release.objects()),
        Vec::<String>::new(),
        "helm upgrade with the same values changed these objects"
    );
    release.upgrade(&["--reuse-values"]);
    assert_eq!(
        changed(&before, &release.objects()),
        Vec::<String>::new(),
        "helm upgrade --reuse-values (docs/deploy.md's command) changed these objects"
    );

    // A changed value changes its object only, and helm keeps the caBundle it never sets.
    let ca_bundles = |cluster: &TestCluster| -> Vec<Value> {
        get_json(
            cluster,
            &["get", "validatingwebhookconfiguration", &vwc_name],
        )["webhooks"]
            .as_array()
            .expect("webhooks")
            .iter()
            .map(|w| w["clientConfig"]["caBundle"].clone())
            .collect()
    };
    let bundles = ca_bundles(cluster);
    release.upgrade(&["--reuse-values", "--set", "webhook.timeoutSeconds=7"]);
    let changed_objects = changed(&before, &release.objects());
    assert_eq!(
        changed_objects
            .iter()
            .map(|c| c.split(' ').next().unwrap_or_default())
            .collect::<Vec<_>>(),
        // The webhook's header and request timeouts follow timeoutSeconds (40 % and 60 %).
        [
            format!("Deployment/{ns}/hatrack-webhook"),
            format!("ValidatingWebhookConfiguration//{vwc_name}")
        ],
        "{changed_objects:?}"
    );
    assert_eq!(
        ca_bundles(cluster),
        bundles,
        "helm upgrade dropped the caBundle"
    );
    let vwc = get_json(
        cluster,
        &["get", "validatingwebhookconfiguration", &vwc_name],
    );
    for w in vwc["webhooks"].as_array().expect("webhooks") {
        assert_eq!(w["timeoutSeconds"], 7);
    }
    let webhook = get_json(
        cluster,
        &["get", "deployment", "hatrack-webhook", "-n", &ns],
    );
    let args = webhook["spec"]["template"]["spec"]["containers"][0]["args"].to_string();
    assert!(
        args.contains("--header-read-timeout=2800ms") && args.contains("--request-timeout=4200ms"),
        "the webhook's timeouts stay under the API server's 7 s: {args}"
    );

    // docs/deploy.md: the CRDs stay, and so does the self-managed certificate Secret, until
    // deleted with its command.
    release.uninstall(&[
        format!("Lease/{ns}/hatrack-controller"),
        format!("Secret/{ns}/hatrack-webhook-tls"),
    ]);
    assert_crds_established(cluster);
    let (ok, out, err) = run(kubectl(cluster).args([
        "-n",
        &ns,
        "delete",
        "secret/hatrack-webhook-tls",
        "lease/hatrack-controller",
    ]));
    assert!(ok, "{out}{err}");
    assert!(namespace_contents(cluster, &ns).is_empty());
}

/// tests/data/chart/custom.yaml: every option at once (names, labels, annotations, scheduling,
/// NetworkPolicies with peers, `lookups: off`, warn mode, failurePolicy Ignore, hard
/// anti-affinity, a named ServiceAccount and Secret), without the ServiceMonitor (below).
#[tokio::test]
async fn custom_values_install_upgrade_without_change_and_uninstall() {
    let _serial = serial().await;
    let url_value = format!("webhook.url={}", unreachable_url());
    let custom = values_file("custom.yaml");
    let kinds = install_upgrade_uninstall(
        "chart-custom",
        "acme",
        &[
            "-f",
            &custom,
            "--set",
            &url_value,
            "--set",
            "metrics.serviceMonitor.enabled=false",
        ],
    )
    .await;
    assert_eq!(
        kinds.iter().filter(|k| *k == "NetworkPolicy").count(),
        2,
        "{kinds:?}"
    );
}

/// One controller without leader election (its Lease RBAC dropped, `Recreate` strategy),
/// `webhook.lookups=off` as `--set` passes it, NetworkPolicies on.
#[tokio::test]
async fn no_leader_election_no_lookups_network_policies_install_and_uninstall() {
    let _serial = serial().await;
    // A URL with a path (and a trailing slash the chart trims).
    let url_value = format!("webhook.url={}/hooks/", unreachable_url());
    let mut args: Vec<&str> = REQUIRED.to_vec();
    args.extend([
        "--set",
        &url_value,
        "--set",
        "controller.leaderElection.enabled=false",
        "--set",
        "controller.replicas=1",
        "--set",
        "webhook.lookups=off",
        "--set",
        "networkPolicy.enabled=true",
    ]);
    let kinds = install_upgrade_uninstall("chart-variant", "hatrack", &args).await;
    assert_eq!(
        kinds.iter().filter(|k| *k == "Role").count(),
        1,
        "{kinds:?}"
    );
    assert_eq!(
        kinds.iter().filter(|k| *k == "NetworkPolicy").count(),
        2,
        "{kinds:?}"
    );
}

/// Two releases of the same name in two namespaces (one controller per watched namespace):
/// their cluster-scoped objects (ClusterRoles, bindings, webhook configuration) must not
/// collide, or helm refuses the second ("exists and cannot be imported into the current
/// release").
#[tokio::test]
async fn the_same_release_name_installs_in_two_namespaces() {
    let _serial = serial().await;
    let cluster = cluster().await;
    let (a, b) = (
        cluster.namespace("chart-team-a").await,
        cluster.namespace("chart-team-b").await,
    );
    // Ignore: while one release's webhook configuration is stored, the other's Deployments
    // are created in a namespace it checks, and nothing answers at its URL.
    let mut releases = Vec::new();
    for (ns, watched) in [(&a, "payments"), (&b, "billing")] {
        let url_value = format!("webhook.url={}", unreachable_url());
        let watch = format!("controller.watchNamespace={watched}");
        let mut args: Vec<&str> = REQUIRED.to_vec();
        args.extend([
            "--set",
            &url_value,
            "--set",
            &watch,
            "--set",
            "webhook.failurePolicy=Ignore",
        ]);
        releases.push(Release::install(cluster, "hatrack", ns, &args));
    }
    let first = releases[0].objects();
    let second = releases[1].objects();
    assert_eq!(first.len(), second.len());
    assert!(
        first.keys().all(|k| !second.contains_key(k)),
        "{first:#?}\n{second:#?}"
    );
    for release in releases {
        release.uninstall(&[]);
    }
}

/// The ServiceMonitor needs the Prometheus Operator's CRD, which is not installed here (nor
/// bundled by the chart): helm then refuses the install before creating anything, with a
/// message naming the missing kind, as docs/deploy.md says.
#[tokio::test]
async fn service_monitor_without_its_crd_fails_before_creating_anything() {
    let _serial = serial().await;
    let cluster = cluster().await;
    let (ok, out, _) =
        run(kubectl(cluster).args(["get", "crd", "servicemonitors.monitoring.coreos.com"]));
    if ok {
        eprintln!("skipped: this cluster has the ServiceMonitor CRD ({out})");
        return;
    }
    let ns = cluster.namespace("chart-monitor").await;
    let url_value = format!("webhook.url={}", unreachable_url());
    let mut args: Vec<&str> = REQUIRED.to_vec();
    args.extend([
        "--set",
        &url_value,
        "--set",
        "metrics.serviceMonitor.enabled=true",
    ]);
    let (ok, out, err) = run(helm(
        cluster,
        &[
            "install",
            "hatrack",
            chart().to_str().expect("utf-8 path"),
            "--namespace",
            &ns,
            "--wait=false",
        ],
    )
    .args(&args));
    assert!(!ok, "installed without the ServiceMonitor CRD: {out}");
    assert!(
        err.contains(
            r#"no matches for kind "ServiceMonitor" in version "monitoring.coreos.com/v1""#
        ),
        "{err}"
    );
    assert!(namespace_contents(cluster, &ns).is_empty());
    assert!(
        labelled_cluster_wide(cluster, "app.kubernetes.io/instance=hatrack")
            .iter()
            .all(|k| !k.contains(&ns))
    );
}

/// The default, Service-based webhook configuration (no `webhook.url`) is never stored here:
/// `helm install --dry-run=server` succeeds and stores nothing, and the server validates and
/// admits every rendered object as a dry run (`kubectl create --dry-run=server`).
#[tokio::test]
async fn service_based_webhook_configuration_passes_a_server_dry_run() {
    let _serial = serial().await;
    let cluster = cluster().await;
    let ns = cluster.namespace("chart-dry-run").await;
    let chart_path = chart();
    let chart_path = chart_path.to_str().expect("utf-8 path");
    let (ok, out, err) = run(helm(
        cluster,
        &[
            "install",
            "hatrack",
            chart_path,
            "--namespace",
            &ns,
            "--dry-run=server",
        ],
    )
    .args(REQUIRED));
    assert!(ok, "helm install --dry-run=server: {out}{err}");
    assert!(
        out.contains("kind: ValidatingWebhookConfiguration"),
        "{out}"
    );
    assert!(
        namespace_contents(cluster, &ns).is_empty(),
        "the dry run stored objects"
    );

    let (ok, rendered, err) = run(helm(
        cluster,
        &["template", "hatrack", chart_path, "--namespace", &ns],
    )
    .args(REQUIRED));
    assert!(ok, "helm template: {err}");
    assert!(
        rendered.contains("service:\n        name: hatrack-webhook"),
        "{rendered}"
    );
    let file = temp_file(cluster, &format!("dry-run-{ns}.yaml"), &rendered);
    let (ok, out, err) = run(kubectl(cluster)
        .args(["create", "--dry-run=server", "-o", "name", "-f"])
        .arg(&file));
    assert!(ok, "kubectl create --dry-run=server:\n{out}{err}");
    // 16 objects, the default IAMGuardrail and the webhook's pod-templates ConfigMap.
    assert_eq!(out.lines().count(), 18, "{out}");
    assert!(
        namespace_contents(cluster, &ns).is_empty(),
        "the dry run stored objects"
    );
    assert!(
        labelled_cluster_wide(cluster, "app.kubernetes.io/instance=hatrack")
            .iter()
            .all(|k| !k.contains(&ns))
    );
}

/// Every form of `webhook.url` the values schema lets through is stored by the API server
/// (as a dry run), and the forms it refuses are refused by the API server too, which would
/// otherwise fail the install only after every other object was created.
#[tokio::test]
async fn webhook_urls_the_schema_accepts_are_the_ones_the_api_server_accepts() {
    let cluster = cluster().await;
    let ns = cluster.namespace("chart-urls").await;
    let chart_path = chart();
    let chart_path = chart_path.to_str().expect("utf-8 path");
    let render = |url: &str| -> String {
        let url_value = format!("webhook.url={url}");
        let (ok, out, err) = run(helm(
            cluster,
            &[
                "template",
                "hatrack",
                chart_path,
                "--namespace",
                &ns,
                "--show-only",
                "templates/webhook-configuration.yaml",
                "--set",
                &url_value,
            ],
        )
        .args(REQUIRED));
        assert!(ok, "helm template --set {url_value}: {err}");
        out
    };
    let dry_run = |name: &str, rendered: &str| -> (bool, String) {
        let file = temp_file(cluster, &format!("vwc-{ns}-{name}.yaml"), rendered);
        let (ok, out, err) = run(kubectl(cluster)
            .args(["create", "--dry-run=server", "-f"])
            .arg(&file));
        (ok, format!("{out}{err}"))
    };
    for (i, url) in [
        "https://127.0.0.1:8443",
        "https://[::1]:8443/hooks/",
        "https://hatrack-webhook.example.com",
        "https://hatrack-webhook.example.com:443/a/b",
    ]
    .into_iter()
    .enumerate()
    {
        let (ok, out) = dry_run(&format!("ok{i}"), &render(url));
        assert!(ok, "{url}: {out}");
    }
    // What the schema refuses, slipped past it: the API server refuses it as well.
    let rendered = render("https://127.0.0.1:8443");
    for (i, (bad, message)) in [
        (
            "https://me@127.0.0.1:8443",
            "user information is not permitted",
        ),
        (
            "http://127.0.0.1:8443",
            "'https' is the only allowed URL scheme",
        ),
        (
            "https://127.0.0.1:8443/?x=1",
            "query parameters are not permitted",
        ),
        ("https://127.0.0.1:8443/#top", "fragments are not permitted"),
    ]
    .into_iter()
    .enumerate()
    {
        let (ok, out) = dry_run(
            &format!("bad{i}"),
            &rendered.replace("https://127.0.0.1:8443", bad),
        );
        assert!(!ok, "{bad} was accepted: {out}");
        assert!(out.contains(message), "{bad}: {out}");
    }
}
