//! The cluster's own namespaces (`kube-system` …) are judged, but in their own mode (`warn` by
//! default): keyed add-ons live there, and a denial there could stop the cluster from healing.
//! The chart sends them through a second webhook entry with `failurePolicy: Ignore`, so a
//! webhook that is down never blocks them either (docs/deploy.md, "kube-system").

use std::collections::HashSet;
use std::sync::Arc;

use crate::detect::{Mode, Overlay, ReferenceView};

/// Flags of the system namespaces (`hatrack webhook`).
#[derive(Debug, Clone, clap::Args)]
pub struct SystemArgs {
    /// Namespaces judged in `--system-mode` instead of `--mode` (comma-separated; empty: none).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "kube-system,kube-public,kube-node-lease",
        env = "HATRACK_SYSTEM_NAMESPACES"
    )]
    pub system_namespaces: Vec<String>,

    /// The mode of the system namespaces; a Namespace's `hatrack.dev/static-keys` label still
    /// overrides it.
    #[arg(long, value_enum, default_value = "warn", env = "HATRACK_SYSTEM_MODE")]
    pub system_mode: Mode,
}

impl Default for SystemArgs {
    fn default() -> Self {
        Self {
            system_namespaces: vec![
                "kube-system".into(),
                "kube-public".into(),
                "kube-node-lease".into(),
            ],
            system_mode: Mode::Warn,
        }
    }
}

/// A view that answers the system namespaces' mode: the namespace's label if it has one, else
/// `mode`. Everything else is the inner view's.
pub struct SystemNamespaces {
    inner: Arc<dyn ReferenceView>,
    namespaces: HashSet<String>,
    mode: Mode,
}

impl SystemNamespaces {
    pub fn wrap(inner: Arc<dyn ReferenceView>, args: &SystemArgs) -> Arc<dyn ReferenceView> {
        let namespaces: HashSet<String> = args
            .system_namespaces
            .iter()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect();
        if namespaces.is_empty() {
            return inner;
        }
        Arc::new(Self {
            inner,
            namespaces,
            mode: args.system_mode,
        })
    }
}

impl Overlay for SystemNamespaces {
    fn inner(&self) -> &dyn ReferenceView {
        &*self.inner
    }

    fn namespace_mode(&self, namespace: &str) -> Option<Mode> {
        self.inner
            .namespace_mode(namespace)
            .or_else(|| self.namespaces.contains(namespace).then_some(self.mode))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::{Lookup, NoLookups, RefKind};

    struct Labelled;
    impl ReferenceView for Labelled {
        fn lookup(&self, _: RefKind, _: &str, _: &str) -> Lookup {
            Lookup::Disabled
        }
        fn namespace_mode(&self, namespace: &str) -> Option<Mode> {
            (namespace == "kube-public").then_some(Mode::Enforce)
        }
    }

    #[test]
    fn system_namespaces_get_the_system_mode_unless_labelled() {
        let view = SystemNamespaces::wrap(Arc::new(Labelled), &SystemArgs::default());
        assert_eq!(view.namespace_mode("kube-system"), Some(Mode::Warn));
        assert_eq!(view.namespace_mode("kube-node-lease"), Some(Mode::Warn));
        // The label is the cluster admin's explicit choice.
        assert_eq!(view.namespace_mode("kube-public"), Some(Mode::Enforce));
        // Any other namespace: the global mode (no answer here).
        assert_eq!(view.namespace_mode("team"), None);
    }

    #[test]
    fn no_system_namespaces_leaves_the_view_as_it_was() {
        let args = SystemArgs {
            system_namespaces: vec![" ".into()],
            system_mode: Mode::Audit,
        };
        let view = SystemNamespaces::wrap(Arc::new(NoLookups), &args);
        assert_eq!(view.namespace_mode("kube-system"), None);
    }
}
