//! Leader election on a `coordination.k8s.io/v1` Lease, so that of several controller
//! replicas exactly one reconciles.
//!
//! Why our own: `kube-leader-election` is built on kube 4 and `kube-lease-manager` (kube 5)
//! relies on server-side-apply field ownership to stop two replicas taking a free lease at
//! once; this elector uses only get/create/replace with `resourceVersion` preconditions,
//! which every API server (and our test stand-in) enforces.
//!
//! Protocol (the one client-go uses):
//! - a replica takes the lease when it has no holder, or when its record has not changed
//!   for `lease_duration` as seen by *this* replica's clock (so clock skew between nodes
//!   does not matter);
//! - the leader renews every `renew_every`; every write is a replace with the
//!   `resourceVersion` it read, so of two racing writers exactly one wins (409 for the other);
//! - a leader that cannot renew in time stops its work before anyone else may take over;
//! - on shutdown the leader clears `holderIdentity`, so a standby takes over at once.

use std::future::Future;
use std::pin::pin;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::Client;
use kube::api::{Api, ObjectMeta, PostParams};
use tokio::time::{Instant, sleep, sleep_until};
use tokio_util::sync::CancellationToken;

/// Flags of leader election (flattened into `hatrack controller`).
#[derive(Debug, Clone, clap::Args)]
pub struct LeaderArgs {
    /// Run only while holding the Lease, so that one of several replicas reconciles.
    #[arg(long, env = "HATRACK_LEADER_ELECTION")]
    pub leader_election: bool,
    /// Name of the coordination.k8s.io Lease.
    #[arg(long, env = "HATRACK_LEASE_NAME", default_value = "hatrack-controller")]
    pub lease_name: String,
    /// Namespace of the Lease (in a pod: its own, from the downward API).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    pub lease_namespace: String,
    /// This replica's identity in the Lease (in a pod: its name).
    #[arg(long, env = "POD_NAME")]
    pub lease_identity: Option<String>,
    /// Seconds a Lease stays valid without renewal.
    #[arg(long, env = "HATRACK_LEASE_DURATION_SECONDS", default_value_t = 15)]
    pub lease_duration_seconds: u64,
}

impl LeaderArgs {
    /// The Lease settings; renewal every third of the duration.
    pub fn lease_config(&self) -> LeaseConfig {
        let identity = self
            .lease_identity
            .clone()
            .filter(|i| !i.is_empty())
            .unwrap_or_else(|| format!("hatrack-{}", std::process::id()));
        let lease_duration = Duration::from_secs(self.lease_duration_seconds.max(3));
        LeaseConfig {
            namespace: self.lease_namespace.clone(),
            name: self.lease_name.clone(),
            identity,
            lease_duration,
            renew_every: lease_duration / 3,
        }
    }
}

/// Which Lease, who we are, and its timing.
#[derive(Debug, Clone)]
pub struct LeaseConfig {
    pub namespace: String,
    pub name: String,
    pub identity: String,
    /// How long the lease is valid without renewal; others take over after that.
    pub lease_duration: Duration,
    /// How often the leader renews (and a standby retries); well below `lease_duration`.
    pub renew_every: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    #[error("renew interval {renew:?} must be shorter than half the lease duration {lease:?}")]
    BadTiming { renew: Duration, lease: Duration },
}

/// Runs `work` only while this replica holds the Lease.
///
/// `work` gets a token that is cancelled when it should stop (shutdown requested); it is
/// started again each time leadership is won, and dropped at once when leadership is lost
/// (someone else may already be leading). On `shutdown` a leading replica cancels the
/// token, waits for `work` as long as its lease is still valid, then releases the Lease.
///
/// Returns `Ok(None)` after shutdown, `Ok(Some(output))` when `work` finished by itself
/// (the Lease is released then too).
pub async fn run_as_leader<F, Fut, T>(
    client: Client,
    config: LeaseConfig,
    shutdown: impl Future<Output = ()>,
    mut work: F,
) -> Result<Option<T>, LeaderError>
where
    F: FnMut(CancellationToken) -> Fut,
    Fut: Future<Output = T>,
{
    if config.renew_every.is_zero() || config.renew_every * 2 > config.lease_duration {
        return Err(LeaderError::BadTiming {
            renew: config.renew_every,
            lease: config.lease_duration,
        });
    }
    let mut elector = Elector::new(client, config);
    let mut shutdown = pin!(shutdown);
    loop {
        // Standby: try to take the lease until we hold it.
        loop {
            if elector.try_acquire().await {
                break;
            }
            tokio::select! {
                _ = &mut shutdown => return Ok(None),
                _ = sleep(elector.config.renew_every) => {}
            }
        }
        tracing::info!(lease = %elector.config.name, identity = %elector.config.identity, "leading");

        let token = CancellationToken::new();
        let mut running = pin!(work(token.clone()));
        let mut next_renew = Instant::now() + elector.config.renew_every;
        loop {
            tokio::select! {
                _ = &mut shutdown => {
                    token.cancel();
                    // Let the work finish in-flight items while our lease is still valid.
                    let _ = tokio::time::timeout_at(elector.valid_until(), running.as_mut()).await;
                    elector.release().await;
                    return Ok(None);
                }
                output = running.as_mut() => {
                    elector.release().await;
                    return Ok(Some(output));
                }
                _ = sleep_until(next_renew) => {
                    match elector.renew().await {
                        Renewal::Renewed => next_renew = Instant::now() + elector.config.renew_every,
                        // Transient failure: retry soon, as long as the lease is ours.
                        Renewal::Failed if Instant::now() < elector.step_down_at() => {
                            next_renew = Instant::now() + elector.config.renew_every / 4;
                        }
                        Renewal::Failed | Renewal::Lost => break,
                    }
                }
            }
        }
        token.cancel();
        tracing::warn!(lease = %elector.config.name, "leadership lost, work stopped");
    }
}

enum Renewal {
    Renewed,
    /// Someone else holds the lease now.
    Lost,
    /// The API could not be reached or refused for another reason.
    Failed,
}

struct Elector {
    api: Api<Lease>,
    config: LeaseConfig,
    /// The lease record last seen and when it was first seen (local clock).
    observed: Option<(LeaseSpec, Instant)>,
    /// The lease as last read or written by us, for the next replace.
    current: Option<Lease>,
    /// When we last wrote the lease as its holder.
    renewed_at: Instant,
}

impl Elector {
    fn new(client: Client, config: LeaseConfig) -> Elector {
        Elector {
            api: Api::namespaced(client, &config.namespace),
            config,
            observed: None,
            current: None,
            renewed_at: Instant::now(),
        }
    }

    /// Until when others must consider our lease valid.
    fn valid_until(&self) -> Instant {
        self.renewed_at + self.config.lease_duration
    }

    /// A leader that has not renewed by then stops, one renew interval before anyone may
    /// take over, so two replicas never work at once.
    fn step_down_at(&self) -> Instant {
        self.valid_until() - self.config.renew_every
    }

    fn spec(&self, acquire_time: Option<MicroTime>, transitions: i32) -> LeaseSpec {
        let now = MicroTime(jiff::Timestamp::now());
        LeaseSpec {
            holder_identity: Some(self.config.identity.clone()),
            lease_duration_seconds: Some(self.config.lease_duration.as_secs().max(1) as i32),
            acquire_time: Some(acquire_time.unwrap_or_else(|| now.clone())),
            renew_time: Some(now),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        }
    }

    /// Reads the lease and takes it when it is free or expired. True when we hold it now.
    async fn try_acquire(&mut self) -> bool {
        let lease = match self.api.get_opt(&self.config.name).await {
            Ok(Some(lease)) => lease,
            Ok(None) => return self.create().await,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the leader Lease");
                return false;
            }
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
        let now = Instant::now();
        // A record that changed restarts the expiry clock.
        let first_seen = match &self.observed {
            Some((seen, at)) if *seen == spec => *at,
            _ => now,
        };
        self.observed = Some((spec.clone(), first_seen));
        let ours = holder.as_deref() == Some(self.config.identity.as_str());
        let duration = spec
            .lease_duration_seconds
            .and_then(|s| u64::try_from(s).ok())
            .map_or(self.config.lease_duration, Duration::from_secs);
        let expired = now >= first_seen + duration;
        if holder.is_some() && !ours && !expired {
            return false;
        }
        let transitions = spec.lease_transitions.unwrap_or(0);
        let (acquire_time, transitions) = if ours {
            (spec.acquire_time.clone(), transitions)
        } else {
            (None, transitions.saturating_add(1))
        };
        let mut next = lease;
        next.spec = Some(self.spec(acquire_time, transitions));
        self.replace(next).await.is_ok()
    }

    async fn create(&mut self) -> bool {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(self.config.name.clone()),
                namespace: Some(self.config.namespace.clone()),
                ..ObjectMeta::default()
            },
            spec: Some(self.spec(None, 0)),
        };
        let started = Instant::now();
        match self.api.create(&PostParams::default(), &lease).await {
            Ok(created) => {
                self.current = Some(created);
                self.renewed_at = started;
                true
            }
            // 409: another replica created it first and leads.
            Err(e) => {
                tracing::debug!(error = %e, "could not create the leader Lease");
                false
            }
        }
    }

    /// Replaces the lease with the resourceVersion it carries (optimistic concurrency).
    async fn replace(&mut self, lease: Lease) -> Result<(), kube::Error> {
        let started = Instant::now();
        match self
            .api
            .replace(&self.config.name, &PostParams::default(), &lease)
            .await
        {
            Ok(written) => {
                self.current = Some(written);
                self.renewed_at = started;
                Ok(())
            }
            Err(e) => {
                self.current = None;
                Err(e)
            }
        }
    }

    async fn renew(&mut self) -> Renewal {
        let lease = match self.current.clone() {
            Some(lease) => lease,
            None => match self.api.get_opt(&self.config.name).await {
                Ok(Some(lease)) => lease,
                // Deleted under us: whoever creates it next leads; we stop.
                Ok(None) => return Renewal::Lost,
                Err(_) => return Renewal::Failed,
            },
        };
        let spec = lease.spec.clone().unwrap_or_default();
        if spec.holder_identity.as_deref() != Some(self.config.identity.as_str()) {
            return Renewal::Lost;
        }
        let mut next = lease;
        next.spec = Some(self.spec(
            spec.acquire_time.clone(),
            spec.lease_transitions.unwrap_or(0),
        ));
        match self.replace(next).await {
            Ok(()) => Renewal::Renewed,
            // Conflict: the lease changed since we read it; the next attempt re-reads it
            // and tells whether it is still ours.
            Err(kube::Error::Api(status)) if status.code == 409 => Renewal::Failed,
            Err(e) => {
                tracing::warn!(error = %e, "cannot renew the leader Lease");
                Renewal::Failed
            }
        }
    }

    /// Clears the holder so that a standby takes over without waiting for expiry.
    async fn release(&mut self) {
        let lease = match self.current.clone() {
            Some(lease) => lease,
            None => match self.api.get_opt(&self.config.name).await {
                Ok(Some(lease)) => lease,
                _ => return,
            },
        };
        let mut spec = lease.spec.clone().unwrap_or_default();
        if spec.holder_identity.as_deref() != Some(self.config.identity.as_str()) {
            return;
        }
        spec.holder_identity = None;
        spec.acquire_time = None;
        spec.renew_time = Some(MicroTime(jiff::Timestamp::now()));
        let mut next = lease;
        next.spec = Some(spec);
        match self.replace(next).await {
            Ok(()) => tracing::info!(lease = %self.config.name, "leader Lease released"),
            Err(e) => tracing::warn!(error = %e, "cannot release the leader Lease; it expires"),
        }
    }
}
