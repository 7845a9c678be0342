//! Typed access to the workload's JSON, with errors that name the field.

use super::super::DetectError;
use super::super::json::{Json, Object, field};
use super::Cx;

impl Cx<'_> {
    /// A field of the wrong type, at `path` below the pod spec.
    pub(super) fn malformed(
        &self,
        path: String,
        expected: &'static str,
        found: &Json<'_>,
    ) -> DetectError {
        self.malformed_at(format!("{}.{}", self.prefix, path), expected, found)
    }

    /// A field of the wrong type, at `path` from the object's root.
    fn malformed_at(&self, path: String, expected: &'static str, found: &Json<'_>) -> DetectError {
        DetectError::Malformed {
            kind: self.object.kind.clone(),
            name: self.object.name.clone(),
            path,
            expected,
            found: found.type_name(),
        }
    }

    pub(super) fn obj<'v>(
        &self,
        v: &'v Json<'v>,
        at: impl FnOnce() -> String,
    ) -> Result<&'v Object<'v>, DetectError> {
        v.as_object()
            .ok_or_else(|| self.malformed(at(), "a mapping", v))
    }

    /// An optional field as `read` takes it: `None` when absent or null, an error naming
    /// `expected` when `read` does not take it.
    fn opt<'v, T>(
        &self,
        m: &'v Object<'v>,
        key: &str,
        at: impl FnOnce() -> String,
        expected: &'static str,
        read: impl FnOnce(&'v Json<'v>) -> Option<T>,
    ) -> Result<Option<T>, DetectError> {
        match field(m, key) {
            None | Some(Json::Null) => Ok(None),
            Some(v) => read(v)
                .map(Some)
                .ok_or_else(|| self.malformed(at(), expected, v)),
        }
    }

    /// An array field; empty when absent or null.
    pub(super) fn arr<'v>(
        &self,
        m: &'v Object<'v>,
        key: &str,
        at: impl FnOnce() -> String,
    ) -> Result<&'v [Json<'v>], DetectError> {
        Ok(self
            .opt(m, key, at, "an array", Json::as_array)?
            .unwrap_or_default())
    }

    pub(super) fn opt_obj<'v>(
        &self,
        m: &'v Object<'v>,
        key: &str,
        at: impl FnOnce() -> String,
    ) -> Result<Option<&'v Object<'v>>, DetectError> {
        self.opt(m, key, at, "a mapping", Json::as_object)
    }

    pub(super) fn opt_str<'v>(
        &self,
        m: &'v Object<'v>,
        key: &str,
        at: impl FnOnce() -> String,
    ) -> Result<Option<&'v str>, DetectError> {
        self.opt(m, key, at, "a string", Json::as_str)
    }

    /// A boolean field; `false` when absent or null.
    pub(super) fn opt_bool(
        &self,
        m: &Object<'_>,
        key: &str,
        at: impl FnOnce() -> String,
    ) -> Result<bool, DetectError> {
        let read = |v: &Json<'_>| match v {
            Json::Bool(b) => Some(*b),
            _ => None,
        };
        Ok(self.opt(m, key, at, "a boolean", read)?.unwrap_or(false))
    }

    /// A list of strings (`command`, `args`); `at` is its path.
    pub(super) fn strings<'v>(
        &self,
        c: &'v Object<'v>,
        field: &str,
        at: impl Fn() -> String,
    ) -> Result<Vec<&'v str>, DetectError> {
        let list = self.arr(c, field, &at)?;
        list.iter()
            .enumerate()
            .map(|(ai, a)| {
                a.as_str()
                    .ok_or_else(|| self.malformed(format!("{}[{ai}]", at()), "a string", a))
            })
            .collect()
    }

    /// The pod spec at `path` (`spec.template.spec`, …) of the workload's object.
    pub(super) fn pod_spec<'v>(
        &self,
        object: &'v Json<'v>,
        path: &[&str],
    ) -> Result<&'v Object<'v>, DetectError> {
        let mut cur = object;
        for (i, seg) in path.iter().enumerate() {
            let m = cur.as_object().ok_or_else(|| {
                let at = if i == 0 {
                    "(object)".into()
                } else {
                    path[..i].join(".")
                };
                self.malformed_at(at, "a mapping", cur)
            })?;
            cur = match field(m, seg) {
                Some(v) if !v.is_null() => v,
                _ => {
                    return Err(DetectError::NoPodTemplate {
                        kind: self.object.kind.clone(),
                        name: self.object.name.clone(),
                        path: path[..=i].join("."),
                    });
                }
            };
        }
        cur.as_object()
            .ok_or_else(|| self.malformed_at(path.join("."), "a mapping", cur))
    }
}
