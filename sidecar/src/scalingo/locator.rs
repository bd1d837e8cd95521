//! The two caches that tell where things are: the usable regions
//! ([`RegionsCache`]) and which region holds an app ([`AppLocations`]).
//!
//! Neither makes HTTP calls itself: the client hands them the fetch or the
//! scan to run, so they can be tested on tokio's paused clock. Both hold a
//! tokio mutex across that fetch, so concurrent callers that miss share one
//! fetch instead of each sending their own.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex as StdMutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

use super::error::ScalingoError;
use super::types::{App, Region};

/// How long the region list is trusted before it is fetched again (regions
/// change very rarely; a stale list keeps being used if the refresh fails).
pub const REGIONS_TTL: Duration = Duration::from_secs(60 * 60);
/// After a failed refresh of a stale region list, wait this long before trying again.
pub const REGIONS_RETRY: Duration = Duration::from_secs(30);
/// After a region scan that failed, `locate` repeats the failure for this long
/// (or the negative TTL if shorter) instead of scanning again at once.
pub const FAILED_SCAN_RETRY: Duration = Duration::from_secs(5);

/// The region list, fetched on first use and again after [`REGIONS_TTL`].
#[derive(Default)]
pub(crate) struct RegionsCache {
    state: Mutex<Option<CachedRegions>>,
}

struct CachedRegions {
    regions: Arc<Vec<Region>>,
    /// When to fetch the list again.
    refresh_at: Instant,
}

impl RegionsCache {
    /// The cached list, or the one `fetch` gives when there is none or it is
    /// due. A failed refresh keeps the stale list for [`REGIONS_RETRY`] more,
    /// except for [`ScalingoError::UnknownRegion`] (a configuration error
    /// stays loud).
    pub async fn get<F, Fut>(&self, fetch: F) -> Result<Arc<Vec<Region>>, ScalingoError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Vec<Region>, ScalingoError>>,
    {
        let mut cached = self.state.lock().await;
        let now = Instant::now();
        if let Some(c) = cached.as_ref() {
            if now < c.refresh_at {
                return Ok(c.regions.clone());
            }
        }
        match fetch().await {
            Ok(regions) => {
                let regions = Arc::new(regions);
                *cached = Some(CachedRegions {
                    regions: regions.clone(),
                    refresh_at: now + REGIONS_TTL,
                });
                Ok(regions)
            }
            Err(e @ ScalingoError::UnknownRegion(_)) => Err(e),
            Err(e) => match cached.as_mut() {
                Some(stale) => {
                    tracing::warn!(error = %e, "refreshing the Scalingo regions failed; keeping the previous list");
                    stale.refresh_at = now + REGIONS_RETRY;
                    Ok(stale.regions.clone())
                }
                None => Err(e),
            },
        }
    }
}

/// The regions of `listed` that are usable, restricted to `wanted` when the
/// configuration names some. A wanted region that is not listed is
/// [`ScalingoError::UnknownRegion`].
pub(crate) fn select_regions(
    mut listed: Vec<Region>,
    wanted: Option<&[String]>,
) -> Result<Vec<Region>, ScalingoError> {
    if let Some(wanted) = wanted {
        if let Some(missing) = wanted
            .iter()
            .find(|w| !listed.iter().any(|r| &r.name == *w))
        {
            tracing::error!(region = %missing, "configured region is not listed by Scalingo");
            return Err(ScalingoError::UnknownRegion(missing.clone()));
        }
        listed.retain(|r| wanted.contains(&r.name));
    }
    Ok(listed)
}

/// App name -> region name, for every app seen in a listing, and the record
/// of the last full scan of the regions (which answers misses for a while).
pub(crate) struct AppLocations {
    /// How long a scan that did not find a name answers "not found" for any name.
    negative_ttl: Duration,
    map: StdMutex<HashMap<String, String>>,
    /// The last full scan; its lock also makes concurrent misses share one scan.
    scan: Mutex<Option<ScanRecord>>,
}

struct ScanRecord {
    at: Instant,
    /// The first error met during the scan, if any: a name not found may then
    /// exist in the region that could not be listed.
    failure: Option<ScalingoError>,
}

impl AppLocations {
    pub fn new(negative_ttl: Duration) -> Self {
        Self {
            negative_ttl,
            map: StdMutex::new(HashMap::new()),
            scan: Mutex::new(None),
        }
    }

    fn map(&self) -> MutexGuard<'_, HashMap<String, String>> {
        // The map stays consistent even if a holder panicked (single inserts/removes).
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The cached region of `app`, if any.
    pub fn get(&self, app: &str) -> Option<String> {
        self.map().get(app).cloned()
    }

    /// A listing of `region` is the truth for it: apps that left it are dropped.
    pub fn record_listing(&self, region: &str, apps: &[App]) {
        let mut map = self.map();
        map.retain(|_, r| r != region);
        for app in apps {
            map.insert(app.name.clone(), region.to_owned());
        }
    }

    /// Drops `app`, wherever it was cached.
    pub fn forget(&self, app: &str) {
        self.map().remove(app);
    }

    /// Drops `app` if it was cached in `region` (that region just said 404).
    pub fn forget_in(&self, region: &str, app: &str) {
        let mut map = self.map();
        if map.get(app).is_some_and(|r| r == region) {
            map.remove(app);
        }
    }

    /// The region of `app`: from the cache, else from a new `scan` (which
    /// lists every region, recording each listing here, and gives its first
    /// error), unless the last scan is recent enough to answer for it: for
    /// `negative_ttl` after a clean scan (`None`), or the shorter of that and
    /// [`FAILED_SCAN_RETRY`] after a failed one (its error).
    pub async fn locate<F, Fut>(&self, app: &str, scan: F) -> Result<Option<String>, ScalingoError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Option<ScalingoError>>,
    {
        if let Some(region) = self.get(app) {
            return Ok(Some(region));
        }
        let mut last = self.scan.lock().await;
        // A scan may have completed while we waited for the lock.
        if let Some(region) = self.get(app) {
            return Ok(Some(region));
        }
        if let Some(record) = last.as_ref() {
            let ttl = match record.failure {
                None => self.negative_ttl,
                Some(_) => self.negative_ttl.min(FAILED_SCAN_RETRY),
            };
            if record.at.elapsed() < ttl {
                return match &record.failure {
                    None => Ok(None),
                    Some(e) => Err(e.clone()),
                };
            }
        }
        let failure = scan().await;
        *last = Some(ScanRecord {
            at: Instant::now(),
            failure: failure.clone(),
        });
        match (self.get(app), failure) {
            (Some(region), _) => Ok(Some(region)),
            (None, Some(e)) => Err(e),
            (None, None) => {
                tracing::debug!(app, "app not found in any region");
                Ok(None)
            }
        }
    }
}
