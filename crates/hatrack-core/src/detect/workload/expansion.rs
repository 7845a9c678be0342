//! The kubelet's `$(VAR)` expansion of one container's env and commands.

use std::borrow::Cow;
use std::collections::HashMap;

use super::super::expand;
use super::env::EnvEntry;

/// Which env a list of strings is expanded with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Env {
    /// The container's final env (`command`, `args`).
    Runtime,
    /// Only the literal values as written, `valueFrom` vars as empty (probe exec commands).
    Static,
    /// Not expanded (lifecycle hooks' exec commands).
    None,
}

/// The `$(VAR)` expansion of one container's env, as the kubelet builds it: each literal value
/// expanded with the vars defined before it; vars from `valueFrom` and `envFrom` are unknown
/// and their references stay as written.
#[derive(Default)]
pub(super) struct Expansion {
    /// Per env entry, the expanded value when expansion changed it.
    pub(super) env: Vec<Option<String>>,
    /// The final env: a known value, or `None` for a var whose value is not known.
    runtime: HashMap<String, Option<String>>,
    /// The literal values as written (`valueFrom` vars empty), for probes.
    statics: HashMap<String, String>,
    budget: usize,
    pub(super) too_long: bool,
}

impl Expansion {
    pub(super) fn run(&mut self, entries: &[EnvEntry<'_>]) {
        self.budget = expand::CONTAINER_BUDGET;
        for (var, value, value_from) in entries {
            self.statics
                .insert(var.to_string(), value.unwrap_or("").to_string());
            let known = match (value, value_from) {
                (_, Some(_)) => None,
                (v, None) => {
                    let v = v.unwrap_or("");
                    let runtime = &self.runtime;
                    let lookup = |n: &str| runtime.get(n).and_then(|v| v.as_deref());
                    match expand::expand(v, &lookup, &mut self.budget) {
                        Ok(Cow::Borrowed(_)) => {
                            self.env.push(None);
                            Some(v.to_string())
                        }
                        Ok(Cow::Owned(x)) => {
                            self.env.push(Some(x.clone()));
                            Some(x)
                        }
                        Err(expand::TooLong) => {
                            self.too_long = true;
                            self.env.push(None);
                            Some(v.to_string())
                        }
                    }
                }
            };
            if value_from.is_some() {
                self.env.push(None);
            }
            self.runtime.insert(var.to_string(), known);
        }
    }

    /// `text` expanded with `env`, when that changes it.
    pub(super) fn expand(&mut self, text: &str, env: Env) -> Option<String> {
        if self.too_long {
            return None;
        }
        let result = match env {
            Env::None => return None,
            Env::Runtime => {
                let runtime = &self.runtime;
                let lookup = |n: &str| runtime.get(n).and_then(|v| v.as_deref());
                expand::expand(text, &lookup, &mut self.budget)
            }
            Env::Static => {
                let statics = &self.statics;
                let lookup = |n: &str| statics.get(n).map(String::as_str);
                expand::expand(text, &lookup, &mut self.budget)
            }
        };
        match result {
            Ok(Cow::Owned(x)) => Some(x),
            Ok(Cow::Borrowed(_)) => None,
            Err(expand::TooLong) => {
                self.too_long = true;
                None
            }
        }
    }
}
