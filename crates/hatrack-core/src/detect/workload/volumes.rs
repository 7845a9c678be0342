//! Findings of a pod's volumes: Secrets and ConfigMaps mounted with AWS keys, and downward
//! API files made from annotations or labels that hold keys.

use super::super::facts::{KeyFact, ObjectFacts};
use super::super::json::Object;
use super::super::scan;
use super::pod::{VolRef, Volume, field_values, volume_path};
use super::{Cx, Known, keys_hold, ref_rule};

impl Cx<'_> {
    /// Files of a downward API volume (or projected source) made from annotations or labels:
    /// what they hold reaches every container that mounts the volume.
    pub(super) fn downward(&mut self, vol: &Volume<'_>, meta: Option<&Object<'_>>) {
        for (at, path, fp) in &vol.fields {
            for (name, value) in field_values(meta, fp) {
                if let Some(hit) = scan::find_credentials(value) {
                    let place =
                        format!("downwardAPI file '{path}' of volume '{}' ({fp})", vol.name);
                    self.literal(hit, None, at.clone(), &place, "downwardAPI", name);
                }
            }
        }
    }

    /// Secret, ConfigMap and projected volumes: the mounted keys must hold no AWS key.
    pub(super) fn volume(&mut self, vol: &Volume<'_>, users: &[&str]) {
        for r in &vol.refs {
            let vpath = volume_path(vol, r);
            let vp = vpath.clone();
            let Known::Found(facts) = self.lookup(r.kind, r.name, r.optional, None, || vp) else {
                continue;
            };
            let keys: Vec<&str> = selected_keys(&facts, r)
                .filter(|k| k.class.is_credential())
                .map(|k| &*k.name)
                .collect();
            if keys.is_empty() {
                continue;
            }
            let who = match users {
                [] => "not mounted by any container".to_string(),
                [one] => format!("mounted by container '{one}'"),
                many => format!("mounted by containers '{}'", many.join("', '")),
            };
            self.push(
                ref_rule(r.kind),
                None,
                vpath,
                format!(
                    "volume '{}' ({who}) mounts {} '{}', whose {} AWS key material",
                    vol.name,
                    r.kind.as_str(),
                    r.name,
                    keys_hold(&keys)
                ),
                format!("volume {} {} {}", vol.name, r.kind.as_str(), r.name),
            );
        }
    }
}

/// The keys of an object that a volume reference mounts (all, or those its `items` name).
pub(super) fn selected_keys<'f>(
    facts: &'f ObjectFacts,
    r: &VolRef<'_>,
) -> impl Iterator<Item = &'f KeyFact> {
    let items = r.items.clone();
    facts.keys.iter().filter(move |k| {
        items
            .as_ref()
            .is_none_or(|i| i.iter().any(|(key, _)| *key == &*k.name))
    })
}
