//! etcd and kube-apiserver started on this host, on free loopback ports, from a thread that
//! lives as long as the test process, each process tied to it with `PR_SET_PDEATHSIG`; the
//! cluster's directory removed at exit; the API server's audit log, when asked for.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::super::moto::free_port;
use super::pki::pki;
use super::tools::tool;
use super::{TestCluster, b64, kubeconfig_yaml, write};

impl TestCluster {
    /// Starts etcd and kube-apiserver here (blocking: call it from a blocking task).
    pub(super) fn start() -> TestCluster {
        let etcd_bin = tool("HATRACK_ETCD", "etcd");
        let apiserver_bin = tool("HATRACK_KUBE_APISERVER", "kube-apiserver");
        let dir = tempfile::Builder::new()
            .prefix("hatrack-apiserver-")
            .tempdir()
            .expect("temp dir")
            .keep();
        let pki = pki();
        for (name, contents) in [
            ("ca.crt", &pki.ca_pem),
            ("apiserver.crt", &pki.serving_cert),
            ("apiserver.key", &pki.serving_key),
            ("sa.pub", &pki.sa_public),
            ("sa.key", &pki.sa_private),
        ] {
            write(&dir.join(name), contents);
        }

        remove_at_exit(&dir);

        let (tx, rx) = mpsc::channel::<Result<String, String>>();
        let thread_dir = dir.clone();
        // The processes' parent thread: it must outlive every test of this binary, so it
        // parks forever; the process's exit ends it and, through PDEATHSIG, the servers.
        std::thread::Builder::new()
            .name("test-apiserver".into())
            .spawn(move || {
                let result = start_processes(&thread_dir, &etcd_bin, &apiserver_bin);
                let children = match result {
                    Ok((server, children)) => {
                        let _ = tx.send(Ok(server));
                        children
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return;
                    }
                };
                let _keep = children;
                loop {
                    std::thread::park();
                }
            })
            .expect("cluster thread");
        let server = match rx.recv().expect("cluster thread answers") {
            Ok(server) => server,
            Err(e) => panic!("{e}"),
        };

        let kubeconfig = dir.join("admin.kubeconfig");
        write(
            &kubeconfig,
            &kubeconfig_yaml(
                &server,
                &pki.ca_pem,
                &format!(
                    "client-certificate-data: {}\n    client-key-data: {}",
                    b64(&pki.admin_cert),
                    b64(&pki.admin_key)
                ),
            ),
        );
        let audit_log = audit_enabled().then(|| dir.join("audit.log"));
        TestCluster {
            kubeconfig,
            server,
            ca_pem: pki.ca_pem,
            is_local: true,
            dir,
            audit_log,
        }
    }
}

/// Starts `cmd` so that the kernel kills it when the calling thread ends (PR_SET_PDEATHSIG),
/// its stdout and stderr going to `log`. The cluster calls it from its own thread, which
/// lives as long as the test process; a test calling it from its own thread gets the child
/// killed when the test ends, even by a panic.
pub fn spawn_tied_to_this_thread(cmd: &mut Command, log: &Path) -> Child {
    let out = std::fs::File::create(log).expect("log file");
    let err = out.try_clone().expect("log file");
    cmd.stdin(Stdio::null()).stdout(out).stderr(err);
    tie_to_this_thread(cmd)
        .spawn()
        .unwrap_or_else(|e| panic!("start {:?}: {e}", cmd.get_program()))
}

/// Makes the child `cmd` starts die with SIGKILL when the thread that starts it ends
/// (PR_SET_PDEATHSIG): a test process killed before its `Drop`s run leaves no server behind.
pub fn tie_to_this_thread(cmd: &mut Command) -> &mut Command {
    // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
    }
}

pub(super) fn audit_enabled() -> bool {
    std::env::var_os("HATRACK_TEST_AUDIT").is_some_and(|v| v == "1")
}

/// Requests in the audit log made by `username`, by verb (`list`, `watch`, `patch`, ...).
pub fn audited_requests(
    audit_log: &Path,
    username: &str,
) -> std::collections::BTreeMap<String, u64> {
    let mut by_verb = std::collections::BTreeMap::new();
    let text = std::fs::read_to_string(audit_log).unwrap_or_default();
    for line in text.lines() {
        let Ok(event) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let verb = event["verb"].as_str().unwrap_or("?").to_string();
        // A watch is counted when it starts (it completes only when it ends); others once done.
        let stage = if verb == "watch" {
            "ResponseStarted"
        } else {
            "ResponseComplete"
        };
        if event["user"]["username"] == username && event["stage"] == stage {
            *by_verb.entry(verb).or_insert(0) += 1;
        }
    }
    by_verb
}

pub(super) static REMOVE_AT_EXIT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

/// Removes the cluster's directory (etcd's data, certificates, logs) when the test process
/// exits, unless `HATRACK_KEEP_TEST_CLUSTER` is set (to read the servers' logs afterwards).
pub(super) fn remove_at_exit(dir: &Path) {
    extern "C" fn remove() {
        if let Some(dir) = REMOVE_AT_EXIT.get() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
    if std::env::var_os("HATRACK_KEEP_TEST_CLUSTER").is_some() {
        eprintln!("test cluster files kept in {}", dir.display());
        return;
    }
    if REMOVE_AT_EXIT.set(dir.to_path_buf()).is_ok() {
        // SAFETY: registers a plain function; it runs once, at exit, after the tests.
        unsafe {
            libc::atexit(remove);
        }
    }
}

pub(super) fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// Starts etcd, then kube-apiserver, each on free loopback ports; retries with new ports if a
/// port was taken in between. Returns the API server's URL and the children.
pub(super) fn start_processes(
    dir: &Path,
    etcd_bin: &Path,
    apiserver_bin: &Path,
) -> Result<(String, Vec<Child>), String> {
    let mut last_error = String::new();
    for attempt in 0..3 {
        let etcd_client = free_port();
        let etcd_peer = free_port();
        let data = dir.join(format!("etcd-{attempt}"));
        let etcd_log = dir.join("etcd.log");
        let mut etcd = spawn_tied_to_this_thread(
            Command::new(etcd_bin).arg("--data-dir").arg(&data).args([
                "--name=test",
                &format!("--listen-client-urls=http://127.0.0.1:{etcd_client}"),
                &format!("--advertise-client-urls=http://127.0.0.1:{etcd_client}"),
                &format!("--listen-peer-urls=http://127.0.0.1:{etcd_peer}"),
                &format!("--initial-advertise-peer-urls=http://127.0.0.1:{etcd_peer}"),
                &format!("--initial-cluster=test=http://127.0.0.1:{etcd_peer}"),
                // Tests need no durability; fsync dominates etcd's latency on small VMs.
                "--unsafe-no-fsync",
                "--log-level=warn",
            ]),
            &etcd_log,
        );
        if let Err(e) = wait_port(etcd_client, &mut etcd, Duration::from_secs(30)) {
            last_error = format!("etcd: {e}; its log ends:\n{}", tail(&etcd_log));
            let _ = etcd.kill();
            continue;
        }

        let port = free_port();
        let log = dir.join("kube-apiserver.log");
        let mut audit_args = Vec::new();
        if audit_enabled() {
            let policy = dir.join("audit-policy.yaml");
            write(
                &policy,
                "apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [RequestReceived]\nrules:\n- level: Metadata\n",
            );
            audit_args.push(format!("--audit-policy-file={}", policy.display()));
            audit_args.push(format!(
                "--audit-log-path={}",
                dir.join("audit.log").display()
            ));
        }
        let mut apiserver = spawn_tied_to_this_thread(
            Command::new(apiserver_bin)
                .args(&audit_args)
                .arg(format!("--etcd-servers=http://127.0.0.1:{etcd_client}"))
                .arg(format!("--secure-port={port}"))
                .args([
                    "--bind-address=127.0.0.1",
                    "--advertise-address=127.0.0.1",
                    "--authorization-mode=RBAC",
                    "--service-cluster-ip-range=10.0.0.0/24",
                    "--service-account-issuer=https://kubernetes.default.svc",
                    "--allow-privileged=true",
                    // No controller-manager keeps endpoints here.
                    "--endpoint-reconciler-type=none",
                    "--v=1",
                ])
                .arg(format!("--cert-dir={}", dir.join("certs").display()))
                .arg(format!("--client-ca-file={}", dir.join("ca.crt").display()))
                .arg(format!(
                    "--tls-cert-file={}",
                    dir.join("apiserver.crt").display()
                ))
                .arg(format!(
                    "--tls-private-key-file={}",
                    dir.join("apiserver.key").display()
                ))
                .arg(format!(
                    "--service-account-key-file={}",
                    dir.join("sa.pub").display()
                ))
                .arg(format!(
                    "--service-account-signing-key-file={}",
                    dir.join("sa.key").display()
                )),
            &log,
        );
        match wait_port(port, &mut apiserver, Duration::from_secs(60)) {
            Ok(()) => return Ok((format!("https://127.0.0.1:{port}"), vec![etcd, apiserver])),
            Err(e) => {
                last_error = format!("kube-apiserver: {e}; its log ends:\n{}", tail(&log));
                let _ = apiserver.kill();
                let _ = etcd.kill();
            }
        }
    }
    Err(format!("test API server did not start: {last_error}"))
}

pub(super) fn wait_port(port: u16, child: &mut Child, limit: Duration) -> Result<(), String> {
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("exited with {status}"));
        }
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("port {port} not open after {limit:?}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
