//! hatrack's static-key rules against the same rules written as Rego (evaluated by regorus,
//! the engine behind Gatekeeper-style policies) and as CEL (the `cel` crate through
//! `kube::core::cel`, with kube's CEL extension functions), in one process run.
//!
//!     cargo bench --bench peers                 # ~1 min
//!     PEERS_SECONDS=1 cargo bench --bench peers # shorter timing windows
//!
//! Policies: bench/peers/static-keys.rego and bench/peers/static-keys.cel.
//!
//! Two parts:
//! 1. Detection on tests/corpus: every workload of every file, judged by hatrack (`check`'s
//!    library, with the file's Secrets/ConfigMaps as the cluster state, as the webhook's
//!    watch cache would hold them) and by the two peers (which see only the workload).
//! 2. Time per review on the three bench fixtures (benches/support/fixtures.rs):
//!    - `from bytes`: from the AdmissionReview body to a decision. hatrack: the webhook's
//!      `review()` plus serialising the answer; Rego: `set_input_json` + `eval_rule`; CEL:
//!      `serde_json` parse, `cel::to_value` of `request.object`, the variables in order.
//!    - `eval only`: the rules on an already parsed input. hatrack: `detect::evaluate` +
//!      `decide` on the pruned parse; Rego: `set_input` of a parsed value + `eval_rule`;
//!      CEL: the variables on an already converted object.
//!
//!    Each figure is the median of batch means (batches of fixed size, at most
//!    `PEERS_SECONDS` seconds and 200 batches per cell), engines measured one after another
//!    in the same process.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hatrack::check::{CheckOptions, check_documents};
use hatrack::detect::{self, InMemoryView, Json, Mode, Target};
use hatrack::manifest::{Document, load_paths};
use hatrack::webhook::review::{Policy, review};
use kube::core::cel::KubeCelExt;
use kube::core::cel::cel;
use serde_json::Value;

#[path = "support/fixtures.rs"]
mod fixtures;

#[path = "../tests/corpus/expect.rs"]
mod expect;

const REGO_RULE: &str = "data.hatrack.statickeys.violation";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

// ---------------------------------------------------------------------------------------
// Rego (regorus)

struct Rego {
    engine: regorus::Engine,
}

impl Rego {
    fn new() -> Rego {
        let mut engine = regorus::Engine::new();
        let path = repo().join("bench/peers/static-keys.rego");
        engine
            .add_policy_from_file(&path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        Rego { engine }
    }

    fn judge_bytes(&mut self, body: &str) -> usize {
        self.engine.set_input_json(body).expect("input is JSON");
        self.violations()
    }

    fn eval(&mut self, input: &regorus::Value) -> usize {
        self.engine.set_input(input.clone());
        self.violations()
    }

    fn violations(&mut self) -> usize {
        let v = self
            .engine
            .eval_rule(REGO_RULE.to_string())
            .expect("rego evaluates");
        match v {
            regorus::Value::Set(s) => s.len(),
            regorus::Value::Undefined => 0,
            other => panic!("unexpected violation value {other}"),
        }
    }
}

// ---------------------------------------------------------------------------------------
// CEL (cel crate via kube::core::cel)

struct Cel {
    root: cel::Context<'static>,
    /// The named definitions of static-keys.cel, in order; the last is `violations`.
    programs: Vec<(String, cel::Program)>,
}

fn parse_cel_file(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let code: Vec<&str> = text
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect();
    for block in code.join("\n").split("\n\n") {
        let block = block.trim();
        if block.is_empty() {
            continue;
        }
        let (name, expr) = block
            .split_once(":=")
            .unwrap_or_else(|| panic!("static-keys.cel: expected `name := expr`: {block}"));
        out.push((name.trim().to_string(), expr.trim().to_string()));
    }
    out
}

impl Cel {
    fn new() -> Cel {
        let path = repo().join("bench/peers/static-keys.cel");
        let text = std::fs::read_to_string(&path).expect("static-keys.cel");
        let programs: Vec<(String, cel::Program)> = parse_cel_file(&text)
            .into_iter()
            .map(|(name, expr)| {
                let p = cel::Program::compile(&expr)
                    .unwrap_or_else(|e| panic!("static-keys.cel {name}: {e}"));
                (name, p)
            })
            .collect();
        assert_eq!(programs.last().map(|(n, _)| n.as_str()), Some("violations"));
        Cel {
            root: cel::Context::default().with_all(),
            programs,
        }
    }

    fn judge_bytes(&self, body: &[u8]) -> usize {
        let review: Value = serde_json::from_slice(body).expect("review is JSON");
        let object = cel::to_value(&review["request"]["object"]).expect("object converts");
        self.eval(object)
    }

    fn eval(&self, object: cel::Value) -> usize {
        let mut scope = self.root.new_inner_scope();
        scope.add_variable_from_value("object", object);
        let mut last = cel::Value::Null;
        for (name, program) in &self.programs {
            let v = program
                .execute(&scope)
                .unwrap_or_else(|e| panic!("static-keys.cel {name}: {e}"));
            scope.add_variable_from_value(name.as_str(), v.clone());
            last = v;
        }
        match last {
            cel::Value::List(l) => l.len(),
            other => panic!("violations is not a list: {other:?}"),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Detection on the corpus

struct Case {
    file: String,
    workload: String,
    expected_rules: Vec<String>,
    hatrack: bool,
    rego: bool,
    cel: bool,
    /// In a namespace `check` exempts by default (kube-system): not compared.
    exempt: bool,
}

fn workload_review(doc: &Document) -> Vec<u8> {
    let mut object = doc.object.clone();
    if object.pointer("/metadata/namespace").is_none()
        && let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut)
    {
        meta.insert("namespace".into(), "default".into());
    }
    fixtures::review_of(object)
}

fn corpus_detection(rego: &mut Rego, cel: &Cel) -> Vec<Case> {
    let mut cases = Vec::new();
    for (file, expectations) in expect::corpus() {
        let docs = load_paths(&[&file]).expect("corpus file loads");
        let report = check_documents(&docs, &CheckOptions::default());
        let short = file.file_name().unwrap().to_string_lossy().into_owned();
        for exp in &expectations {
            let key = |kind: &str, ns: &str, name: &str| {
                kind == exp.kind && ns == exp.namespace && name == exp.name
            };
            let hatrack = report
                .results
                .iter()
                .find(|r| key(&r.kind, r.namespace.as_deref().unwrap_or(""), &r.name))
                .map(|r| !r.findings.is_empty())
                .unwrap_or(false);
            let doc = docs
                .iter()
                .find(|d| key(d.kind(), d.namespace().unwrap_or("default"), d.name()))
                .unwrap_or_else(|| panic!("{short}: no document for {exp:?}"));
            let body = workload_review(doc);
            let rego_hit = rego.judge_bytes(std::str::from_utf8(&body).unwrap()) > 0;
            let cel_hit = cel.judge_bytes(&body) > 0;
            cases.push(Case {
                file: short.clone(),
                workload: format!("{} {}/{}", exp.kind, exp.namespace, exp.name),
                expected_rules: exp.rules.clone(),
                hatrack,
                rego: rego_hit,
                cel: cel_hit,
                exempt: CheckOptions::default()
                    .exempt_namespaces
                    .contains(&exp.namespace),
            });
        }
    }
    cases
}

fn print_detection(cases: &[Case]) {
    let mark = |b: bool| if b { "yes" } else { "-" };
    println!("## Detection on tests/corpus (one row per workload)\n");
    println!("| file | workload | expected findings | hatrack | Rego | CEL |");
    println!("|---|---|---|---|---|---|");
    for c in cases {
        let expected = if c.exempt {
            "(exempt namespace: not compared)".to_string()
        } else if c.expected_rules.is_empty() {
            "(none)".to_string()
        } else {
            c.expected_rules.join(" ")
        };
        println!(
            "| {} | {} | {} | {} | {} | {} |",
            c.file,
            c.workload,
            expected,
            mark(c.hatrack),
            mark(c.rego),
            mark(c.cel)
        );
    }
    let positives: Vec<&Case> = cases
        .iter()
        .filter(|c| !c.exempt && !c.expected_rules.is_empty())
        .collect();
    let negatives: Vec<&Case> = cases
        .iter()
        .filter(|c| !c.exempt && c.expected_rules.is_empty())
        .collect();
    let count = |v: &[&Case], f: fn(&Case) -> bool| v.iter().filter(|c| f(c)).count();
    println!();
    println!(
        "Workloads with static keys (expected findings): {}. Detected: hatrack {}, Rego {}, CEL {}.",
        positives.len(),
        count(&positives, |c| c.hatrack),
        count(&positives, |c| c.rego),
        count(&positives, |c| c.cel)
    );
    println!(
        "Clean workloads: {}. Flagged anyway (false positives): hatrack {}, Rego {}, CEL {}.",
        negatives.len(),
        count(&negatives, |c| c.hatrack),
        count(&negatives, |c| c.rego),
        count(&negatives, |c| c.cel)
    );
    let peer_only: Vec<String> = positives
        .iter()
        .filter(|c| !c.hatrack && (c.rego || c.cel))
        .map(|c| format!("{} {}", c.file, c.workload))
        .collect();
    let hatrack_only = count(&positives, |c| c.hatrack && !c.rego && !c.cel);
    println!(
        "Detected by hatrack only: {hatrack_only}. Detected by a peer but not hatrack: {} {:?}.",
        peer_only.len(),
        peer_only
    );
    let strictly_more = peer_only.is_empty()
        && count(&positives, |c| c.hatrack)
            > count(&positives, |c| c.rego).max(count(&positives, |c| c.cel));
    println!("hatrack detects strictly more than both peers: {strictly_more}\n");
}

// ---------------------------------------------------------------------------------------
// Timing

fn seconds_per_cell() -> f64 {
    std::env::var("PEERS_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3.0)
}

/// Median of batch means, in nanoseconds per call. Bounded: at most `seconds_per_cell()`
/// seconds and 200 batches, after a short warm-up.
fn measure(mut f: impl FnMut() -> usize) -> f64 {
    // Warm-up and batch sizing: aim for batches of ~10 ms.
    let t = Instant::now();
    let mut n = 0u64;
    while t.elapsed() < Duration::from_millis(200) && n < 1_000_000 {
        black_box(f());
        n += 1;
    }
    let per_call = t.elapsed().as_secs_f64() / n as f64;
    let batch = ((0.01 / per_call) as u64).clamp(1, 100_000);
    let budget = Duration::from_secs_f64(seconds_per_cell());
    let start = Instant::now();
    let mut means = Vec::new();
    while start.elapsed() < budget && means.len() < 200 {
        let t = Instant::now();
        for _ in 0..batch {
            black_box(f());
        }
        means.push(t.elapsed().as_secs_f64() * 1e9 / batch as f64);
    }
    means.sort_by(|a, b| a.total_cmp(b));
    means[means.len() / 2]
}

fn fmt_ns(ns: f64) -> String {
    if ns >= 1_000_000.0 {
        format!("{:.2} ms", ns / 1e6)
    } else if ns >= 1000.0 {
        format!("{:.1} µs", ns / 1000.0)
    } else {
        format!("{ns:.0} ns")
    }
}

fn time_fixture(
    name: &str,
    body: &[u8],
    view: &InMemoryView,
    rego: &mut Rego,
    cel: &Cel,
) -> BTreeMap<&'static str, f64> {
    let policy = Policy {
        mode: Mode::Enforce,
        exempt_namespaces: Default::default(),
        templates: Default::default(),
    };
    let text = std::str::from_utf8(body).unwrap();
    // Sanity: every engine finds the fixture clean.
    let (answer, _) = review(body, &policy, view).unwrap();
    assert!(answer.response.unwrap().allowed, "{name}: hatrack denies");
    assert_eq!(rego.judge_bytes(text), 0, "{name}: Rego flags the fixture");
    assert_eq!(cel.judge_bytes(body), 0, "{name}: CEL flags the fixture");

    let arena = bumpalo::Bump::new();
    let pruned = hatrack::webhook::prune::parse(body, &arena).unwrap();
    let obj = pruned.get("request").and_then(|r| r.get("object")).unwrap();
    let meta = obj.get("metadata").unwrap();
    let target = Target {
        kind: obj.get("kind").and_then(Json::as_str).unwrap(),
        namespace: meta.get("namespace").and_then(Json::as_str).unwrap(),
        name: meta.get("name").and_then(Json::as_str).unwrap_or(""),
        object: obj,
    };
    let rego_input = regorus::Value::from_json_str(text).unwrap();
    let parsed: Value = serde_json::from_slice(body).unwrap();
    let cel_object = cel::to_value(&parsed["request"]["object"]).unwrap();

    let mut m = BTreeMap::new();
    m.insert(
        "hatrack-bytes",
        measure(|| {
            let (answer, _) = review(black_box(body), &policy, view).unwrap();
            serde_json::to_vec(&answer).unwrap().len()
        }),
    );
    m.insert("rego-bytes", measure(|| rego.judge_bytes(black_box(text))));
    m.insert("cel-bytes", measure(|| cel.judge_bytes(black_box(body))));
    m.insert(
        "hatrack-eval",
        measure(|| {
            let eval = detect::evaluate(black_box(&target), view).unwrap().unwrap();
            let d = detect::decide(Mode::Enforce, &eval, None);
            black_box(d);
            eval.findings.len()
        }),
    );
    m.insert("rego-eval", measure(|| rego.eval(black_box(&rego_input))));
    m.insert(
        "cel-eval",
        measure(|| cel.eval(black_box(cel_object.clone()))),
    );
    m
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is accepted.
    let t0 = Instant::now();
    let mut rego = Rego::new();
    let cel = Cel::new();

    let large = fixtures::large_deployment();
    let committed = repo().join("benches/data/large-deployment-review.json");
    match std::fs::read(&committed) {
        Ok(bytes)
            if serde_json::from_slice::<Value>(&bytes).ok()
                == serde_json::from_slice::<Value>(&large).ok() => {}
        _ => eprintln!(
            "note: {} differs from fixtures::large_deployment(); regenerate it with PEERS_WRITE_FIXTURES=DIR",
            committed.display()
        ),
    }
    if let Ok(dir) = std::env::var("PEERS_WRITE_FIXTURES") {
        let dir = Path::new(&dir);
        std::fs::write(dir.join("small-pod.json"), fixtures::small_pod()).unwrap();
        std::fs::write(
            dir.join("typical-deployment.json"),
            fixtures::typical_deployment(),
        )
        .unwrap();
        std::fs::write(dir.join("large-deployment-40.json"), &large).unwrap();
    }

    let cases = corpus_detection(&mut rego, &cel);
    print_detection(&cases);

    let view = fixtures::view();
    let fixtures = [
        ("small-pod", fixtures::small_pod()),
        ("typical-deployment", fixtures::typical_deployment()),
        ("large-deployment-40", large),
    ];
    println!(
        "## Time per review (median of batch means, {} s per cell)\n",
        seconds_per_cell()
    );
    println!(
        "| fixture | bytes | hatrack | Rego (regorus) | CEL | Rego / hatrack | CEL / hatrack | hatrack eval | Rego eval | CEL eval | Rego/hatrack eval | CEL/hatrack eval |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    for (name, body) in &fixtures {
        let m = time_fixture(name, body, &view, &mut rego, &cel);
        println!(
            "| {} | {} | {} | {} | {} | {:.1}x | {:.1}x | {} | {} | {} | {:.0}x | {:.0}x |",
            name,
            body.len(),
            fmt_ns(m["hatrack-bytes"]),
            fmt_ns(m["rego-bytes"]),
            fmt_ns(m["cel-bytes"]),
            m["rego-bytes"] / m["hatrack-bytes"],
            m["cel-bytes"] / m["hatrack-bytes"],
            fmt_ns(m["hatrack-eval"]),
            fmt_ns(m["rego-eval"]),
            fmt_ns(m["cel-eval"]),
            m["rego-eval"] / m["hatrack-eval"],
            m["cel-eval"] / m["hatrack-eval"],
        );
    }
    println!(
        "\nfrom bytes = AdmissionReview body to decision; eval = rules on an already parsed input."
    );
    println!("peers bench took {:.0} s", t0.elapsed().as_secs_f64());
}
