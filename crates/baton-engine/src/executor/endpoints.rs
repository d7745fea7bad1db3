//! The chat endpoints that serve agent capabilities: those named in
//! `[agents.CAPABILITY]`, and those registered through the API while the
//! server runs, each with the limits every run's calls to it share and,
//! when it has a health URL, whether it last answered it.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::AgentProvider;

/// A capability's endpoint, where its chat calls go, and the limits every
/// run's calls to it share.
pub(crate) struct Endpoint {
    pub(crate) provider: AgentProvider,
    /// `{base_url}/chat/completions`.
    pub(crate) url: String,
    pub(crate) limits: Limits,
    /// Registered through the API (and so removable there), not configured.
    registered: bool,
    /// What its health URL last said: [`UNCHECKED`], [`UP`] or [`DOWN`].
    health: AtomicU8,
}

const UNCHECKED: u8 = 0;
const UP: u8 = 1;
const DOWN: u8 = 2;

impl Endpoint {
    fn new(provider: AgentProvider, registered: bool) -> Endpoint {
        Endpoint {
            url: format!(
                "{}/chat/completions",
                provider.base_url.trim_end_matches('/')
            ),
            limits: Limits::of(&provider),
            provider,
            registered,
            health: AtomicU8::new(UNCHECKED),
        }
    }

    /// False once its health URL has failed to answer 2xx, until it does.
    pub(crate) fn healthy(&self) -> bool {
        self.health.load(Ordering::Relaxed) != DOWN
    }
}

/// Why an endpoint could not be registered or removed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EndpointError {
    #[error("agent capability `{0}` is already served by an endpoint; remove it first")]
    Taken(String),
    #[error("no endpoint serves agent capability `{0}`")]
    Unknown(String),
    #[error("the endpoint of `{0}` is named in baton.toml; remove it there")]
    Configured(String),
    #[error("{0}")]
    Invalid(String),
}

/// Every endpoint, by capability.
pub(crate) struct Endpoints {
    by_capability: RwLock<BTreeMap<String, Arc<Endpoint>>>,
    client: reqwest::Client,
}

impl Endpoints {
    pub(crate) fn configured(
        providers: &BTreeMap<String, AgentProvider>,
        client: reqwest::Client,
    ) -> Endpoints {
        let by_capability = providers
            .iter()
            .map(|(capability, provider)| {
                (
                    capability.clone(),
                    Arc::new(Endpoint::new(provider.clone(), false)),
                )
            })
            .collect();
        Endpoints {
            by_capability: RwLock::new(by_capability),
            client,
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Arc<Endpoint>>> {
        self.by_capability
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, Arc<Endpoint>>> {
        self.by_capability
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn get(&self, capability: &str) -> Option<Arc<Endpoint>> {
        self.read().get(capability).cloned()
    }

    pub(crate) fn serves(&self, capability: &str) -> bool {
        self.read().contains_key(capability)
    }

    pub(crate) fn all(&self) -> Vec<(String, Arc<Endpoint>)> {
        self.read()
            .iter()
            .map(|(capability, endpoint)| (capability.clone(), Arc::clone(endpoint)))
            .collect()
    }

    /// Serves `capability` by `provider` from now on.
    pub(crate) fn register(
        &self,
        capability: &str,
        provider: AgentProvider,
    ) -> Result<(), EndpointError> {
        for (what, url) in [
            ("base_url", Some(&provider.base_url)),
            ("health_url", provider.health_url.as_ref()),
        ] {
            let Some(url) = url else { continue };
            match reqwest::Url::parse(url) {
                Ok(parsed) if matches!(parsed.scheme(), "http" | "https") => {}
                _ => {
                    return Err(EndpointError::Invalid(format!(
                        "`{what}` must be an http:// or https:// URL, not `{url}`"
                    )));
                }
            }
        }
        let mut endpoints = self.write();
        if endpoints.contains_key(capability) {
            return Err(EndpointError::Taken(capability.to_owned()));
        }
        endpoints.insert(
            capability.to_owned(),
            Arc::new(Endpoint::new(provider, true)),
        );
        Ok(())
    }

    /// Stops serving `capability` by an endpoint registered through the API.
    pub(crate) fn remove(&self, capability: &str) -> Result<(), EndpointError> {
        let mut endpoints = self.write();
        match endpoints.get(capability) {
            None => Err(EndpointError::Unknown(capability.to_owned())),
            Some(endpoint) if !endpoint.registered => {
                Err(EndpointError::Configured(capability.to_owned()))
            }
            Some(_) => {
                endpoints.remove(capability);
                Ok(())
            }
        }
    }

    /// Asks every endpoint with a health URL whether it is up (a 2xx
    /// within `timeout`), once.
    pub(crate) async fn check_health(&self, timeout: Duration) {
        let checked: Vec<(Arc<Endpoint>, String)> = self
            .all()
            .into_iter()
            .filter_map(|(_, endpoint)| {
                let url = endpoint.provider.health_url.clone()?;
                Some((endpoint, url))
            })
            .collect();
        for (endpoint, url) in checked {
            let up = matches!(
                self.client.get(&url).timeout(timeout).send().await,
                Ok(response) if response.status().is_success()
            );
            endpoint
                .health
                .store(if up { UP } else { DOWN }, Ordering::Relaxed);
        }
    }
}

/// An endpoint's `concurrency` and `rate_per_second`, shared by every run.
pub(crate) struct Limits {
    at_once: Option<Arc<Semaphore>>,
    /// When the next call may go, for a rate limit.
    next: Option<(Duration, Mutex<tokio::time::Instant>)>,
}

impl Limits {
    fn of(provider: &AgentProvider) -> Limits {
        Limits {
            at_once: provider
                .concurrency
                .map(|limit| Arc::new(Semaphore::new(limit.max(1) as usize))),
            next: provider
                .rate_per_second
                .filter(|rate| *rate > 0.0 && rate.is_finite())
                .map(|rate| {
                    (
                        Duration::from_secs_f64(1.0 / rate),
                        Mutex::new(tokio::time::Instant::now()),
                    )
                }),
        }
    }

    /// Waits for a turn: a place among the calls at once (held by what is
    /// returned) and the call's slot in the rate.
    pub(crate) async fn enter(&self) -> Option<OwnedSemaphorePermit> {
        let permit = match &self.at_once {
            Some(at_once) => Arc::clone(at_once).acquire_owned().await.ok(),
            None => None,
        };
        if let Some((spacing, next)) = &self.next {
            let at = {
                let mut next = next.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                let at = (*next).max(tokio::time::Instant::now());
                *next = at + *spacing;
                at
            };
            tokio::time::sleep_until(at).await;
        }
        permit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_rate_spaces_calls_and_a_concurrency_limit_holds_the_rest_back() {
        let limits = Limits::of(&AgentProvider {
            concurrency: Some(2),
            rate_per_second: Some(10.0),
            base_url: "http://127.0.0.1:9/v1".to_owned(),
            model: "m".to_owned(),
            ..AgentProvider::default()
        });
        let start = tokio::time::Instant::now();
        let first = limits.enter().await;
        let second = limits.enter().await;
        assert_eq!(
            start.elapsed(),
            Duration::from_millis(100),
            "a tenth of a second apart"
        );
        let third = tokio::spawn(async move {
            let turn = limits.enter().await;
            (turn.is_some(), tokio::time::Instant::now())
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!third.is_finished(), "two calls at once at most");
        drop(first);
        let (held, at) = third.await.unwrap();
        assert!(held);
        assert_eq!(
            at - start,
            Duration::from_millis(1100),
            "in as soon as one ended"
        );
        drop(second);
    }
}
