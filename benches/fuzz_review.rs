//! The cargo-fuzz harness (fuzz/fuzz_targets/harness.rs) as a bounded loop on stable Rust:
//! cargo-fuzz (scripts/fuzz.sh) needs a nightly toolchain (sanitizer flags); this loop, its
//! fallback in scripts/bench.sh, needs only stable.
//!
//!     cargo bench --bench fuzz_review                     # 60 s
//!     FUZZ_SECONDS=600 FUZZ_MAX_EXECS=50000000 cargo bench --bench fuzz_review
//!
//! Inputs: the bench reviews and every workload of tests/corpus as AdmissionReviews, mutated
//! by a seeded generator (byte flips, truncation, splices between seeds, inserted JSON
//! tokens and key material, duplicated spans), plus fully random bytes. No coverage
//! feedback: this is a random mutation loop, not libFuzzer. A panic is caught, counted and
//! its input written to target/fuzz-crashes/.

use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

#[path = "../fuzz/fuzz_targets/harness.rs"]
mod harness;

#[path = "support/fixtures.rs"]
mod fixtures;

const TOKENS: &[&[u8]] = &[
    b"{",
    b"}",
    b"[",
    b"]",
    b",",
    b":",
    b"\"",
    b"null",
    b"true",
    b"-1",
    b"1e999",
    b"\\u0000",
    b"\"env\"",
    b"\"envFrom\"",
    b"\"valueFrom\"",
    b"\"secretKeyRef\"",
    b"\"containers\"",
    b"\"spec\"",
    b"\"template\"",
    b"\"kind\":\"Pod\"",
    b"\"kind\":\"CronJob\"",
    b"\"AWS_ACCESS_KEY_ID\"",
    b"AKIAIOSFODNN7EXAMPLE",
    b"aws_secret_access_key=",
    b"wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    b"\"object\"",
    b"\"oldObject\"",
    b"\"request\"",
    b"\"uid\"",
    b"\"volumes\"",
    b"\"projected\"",
    b"/.aws",
];

fn seeds() -> Vec<Vec<u8>> {
    let mut s = vec![
        fixtures::small_pod(),
        fixtures::typical_deployment(),
        fixtures::large_deployment(),
    ];
    let corpus = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    if let Ok(docs) = hatrack::manifest::load_paths(&[corpus]) {
        for d in docs {
            if hatrack::detect::is_workload_kind(d.kind()) {
                s.push(fixtures::review_of(d.object.clone()));
            }
        }
    }
    s
}

fn mutate(rng: &mut StdRng, seeds: &[Vec<u8>]) -> Vec<u8> {
    if rng.random_ratio(1, 20) {
        let n = rng.random_range(0..256);
        return (0..n).map(|_| rng.random()).collect();
    }
    let mut d = seeds[rng.random_range(0..seeds.len())].clone();
    for _ in 0..rng.random_range(1..6) {
        if d.is_empty() {
            d.push(b'{');
        }
        let i = rng.random_range(0..d.len());
        match rng.random_range(0..6) {
            0 => d[i] = rng.random(),
            1 => d.truncate(i),
            2 => {
                let t = TOKENS[rng.random_range(0..TOKENS.len())];
                d.splice(i..i, t.iter().copied());
            }
            3 => {
                let other = &seeds[rng.random_range(0..seeds.len())];
                let j = rng.random_range(0..other.len());
                d.truncate(i);
                d.extend_from_slice(&other[j..]);
            }
            4 => {
                let end = (i + rng.random_range(1..64)).min(d.len());
                let span = d[i..end].to_vec();
                d.splice(i..i, span);
            }
            _ => {
                let end = (i + rng.random_range(1..32)).min(d.len());
                d.drain(i..end);
            }
        }
    }
    d
}

fn main() {
    let seconds: u64 = std::env::var("FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let max_execs: u64 = std::env::var("FUZZ_MAX_EXECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_000_000);
    let seeds = seeds();
    let mut rng = StdRng::seed_from_u64(6);
    // Count panics instead of printing each one.
    std::panic::set_hook(Box::new(|_| {}));
    let start = Instant::now();
    let (mut execs, mut evaluations, mut panics, mut parsed) = (0u64, 0u64, 0u64, 0u64);
    while start.elapsed() < Duration::from_secs(seconds) && execs < max_execs {
        let input = mutate(&mut rng, &seeds);
        if serde_json::from_slice::<serde::de::IgnoredAny>(&input).is_ok() {
            parsed += 1;
        }
        match std::panic::catch_unwind(|| harness::run(&input)) {
            Ok(n) => evaluations += n as u64,
            Err(_) => {
                panics += 1;
                let dir =
                    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/fuzz-crashes");
                let _ = std::fs::create_dir_all(&dir);
                let _ = std::fs::write(dir.join(format!("crash-{execs}")), &input);
            }
        }
        execs += 1;
    }
    let _ = std::panic::take_hook();
    let secs = start.elapsed().as_secs_f64();
    println!(
        "- {execs} executions of the fuzz harness in {secs:.0} s ({:.0}/s), {} seeds (3 bench reviews + every corpus workload as a review), seeded mutations",
        execs as f64 / secs,
        seeds.len()
    );
    println!(
        "- inputs that were still valid JSON: {parsed} ({:.1}%); review/rule evaluations: {evaluations}",
        100.0 * parsed as f64 / execs.max(1) as f64
    );
    println!(
        "- panics: **{panics}**{}",
        if panics > 0 {
            " (inputs in target/fuzz-crashes/)"
        } else {
            ""
        }
    );
    println!(
        "- coverage-guided fuzzing of the same harness: fuzz/fuzz_targets/review.rs with cargo-fuzz (scripts/fuzz.sh, needs nightly); this loop is the stable-only fallback"
    );
}
