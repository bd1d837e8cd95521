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

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    fn region(name: &str) -> Region {
        serde_json::from_value(serde_json::json!({
            "name": name,
            "api": format!("https://api.{name}.scalingo.com"),
        }))
        .expect("a region")
    }

    fn app(name: &str) -> App {
        serde_json::from_value(serde_json::json!({ "name": name, "status": "running" }))
            .expect("an app")
    }

    fn names(regions: &[Region]) -> Vec<&str> {
        regions.iter().map(|r| r.name.as_str()).collect()
    }

    fn server_error() -> ScalingoError {
        ScalingoError::Server {
            status: 503,
            request_id: None,
            message: "down".into(),
        }
    }

    /// Counts its calls and gives `result`.
    struct Fetch<T> {
        calls: AtomicUsize,
        result: T,
    }

    impl<T: Clone> Fetch<T> {
        fn new(result: T) -> Self {
            Self {
                calls: AtomicUsize::new(0),
                result,
            }
        }

        async fn call(&self) -> T {
            self.calls.fetch_add(1, Ordering::SeqCst);
            self.result.clone()
        }

        fn calls(&self) -> usize {
            self.calls.load(Ordering::SeqCst)
        }
    }

    #[tokio::test(start_paused = true)]
    async fn regions_are_fetched_again_after_their_ttl() {
        let cache = RegionsCache::default();
        let fetch = Fetch::new(Ok(vec![region("osc-fr1")]));
        for _ in 0..3 {
            let regions = cache.get(|| fetch.call()).await.unwrap();
            assert_eq!(names(&regions), ["osc-fr1"]);
        }
        assert_eq!(fetch.calls(), 1);
        tokio::time::advance(REGIONS_TTL - Duration::from_secs(1)).await;
        cache.get(|| fetch.call()).await.unwrap();
        assert_eq!(fetch.calls(), 1, "still fresh");
        tokio::time::advance(Duration::from_secs(1)).await;
        cache.get(|| fetch.call()).await.unwrap();
        assert_eq!(fetch.calls(), 2, "fetched again once due");
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_refresh_keeps_the_stale_list_for_a_while() {
        let cache = RegionsCache::default();
        cache
            .get(|| async { Ok(vec![region("osc-fr1")]) })
            .await
            .unwrap();
        tokio::time::advance(REGIONS_TTL).await;
        let failing = Fetch::new(Err(server_error()));
        let stale = cache.get(|| failing.call()).await.unwrap();
        assert_eq!(names(&stale), ["osc-fr1"]);
        // Not tried again before REGIONS_RETRY, then tried again.
        tokio::time::advance(REGIONS_RETRY - Duration::from_secs(1)).await;
        cache.get(|| failing.call()).await.unwrap();
        assert_eq!(failing.calls(), 1);
        tokio::time::advance(Duration::from_secs(1)).await;
        cache.get(|| failing.call()).await.unwrap();
        assert_eq!(failing.calls(), 2);
        // A configuration error is not hidden by the stale list.
        tokio::time::advance(REGIONS_RETRY).await;
        let unknown = ScalingoError::UnknownRegion("osc-typo".into());
        assert_eq!(
            cache
                .get(|| async { Err(unknown.clone()) })
                .await
                .unwrap_err(),
            unknown
        );
    }

    #[tokio::test(start_paused = true)]
    async fn without_a_list_a_failed_fetch_is_the_error_and_is_not_cached() {
        let cache = RegionsCache::default();
        let failing = Fetch::new(Err(server_error()));
        assert_eq!(
            cache.get(|| failing.call()).await.unwrap_err(),
            server_error()
        );
        cache.get(|| failing.call()).await.unwrap_err();
        assert_eq!(failing.calls(), 2);
    }

    #[test]
    fn configured_regions_restrict_the_list() {
        let listed = || vec![region("osc-fr1"), region("osc-secnum-fr1")];
        assert_eq!(names(&select_regions(listed(), None).unwrap()).len(), 2);
        let only = ["osc-secnum-fr1".to_owned()];
        assert_eq!(
            names(&select_regions(listed(), Some(&only)).unwrap()),
            ["osc-secnum-fr1"]
        );
        let typo = ["osc-fr1".to_owned(), "osc-fr2".to_owned()];
        assert_eq!(
            select_regions(listed(), Some(&typo)).unwrap_err(),
            ScalingoError::UnknownRegion("osc-fr2".into())
        );
    }

    #[test]
    fn a_listing_is_the_truth_for_its_region() {
        let locations = AppLocations::new(Duration::from_secs(30));
        locations.record_listing("osc-fr1", &[app("app-one"), app("app-two")]);
        locations.record_listing("osc-secnum-fr1", &[app("app-three")]);
        assert_eq!(locations.get("app-one").as_deref(), Some("osc-fr1"));
        locations.record_listing("osc-fr1", &[app("app-two")]);
        assert_eq!(locations.get("app-one"), None, "left its region");
        assert_eq!(
            locations.get("app-three").as_deref(),
            Some("osc-secnum-fr1")
        );

        locations.forget_in("osc-fr1", "app-three");
        assert!(
            locations.get("app-three").is_some(),
            "cached in another region"
        );
        locations.forget_in("osc-secnum-fr1", "app-three");
        assert_eq!(locations.get("app-three"), None);
        locations.forget("app-two");
        assert_eq!(locations.get("app-two"), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_clean_scan_answers_misses_for_the_negative_ttl() {
        let ttl = Duration::from_secs(30);
        let locations = AppLocations::new(ttl);
        let scans = AtomicUsize::new(0);
        let scan = || async {
            scans.fetch_add(1, Ordering::SeqCst);
            locations.record_listing("osc-fr1", &[app("app-one")]);
            None
        };
        assert_eq!(
            locations.locate("app-one", scan).await.unwrap().as_deref(),
            Some("osc-fr1")
        );
        assert_eq!(
            locations.locate("app-one", scan).await.unwrap().as_deref(),
            Some("osc-fr1")
        );
        assert_eq!(
            scans.load(Ordering::SeqCst),
            1,
            "a hit is answered from the cache"
        );

        // That scan answers any missing name for the negative TTL.
        assert_eq!(locations.locate("no-such-app", scan).await.unwrap(), None);
        tokio::time::advance(ttl - Duration::from_secs(1)).await;
        assert_eq!(locations.locate("other-bogus", scan).await.unwrap(), None);
        assert_eq!(scans.load(Ordering::SeqCst), 1, "within the negative TTL");
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(locations.locate("other-bogus", scan).await.unwrap(), None);
        assert_eq!(scans.load(Ordering::SeqCst), 2, "scanned again after it");
        assert_eq!(locations.locate("no-such-app", scan).await.unwrap(), None);
        assert_eq!(scans.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_scan_is_repeated_for_a_shorter_time() {
        let locations = AppLocations::new(Duration::from_secs(30));
        let scan = Fetch::new(Some(server_error()));
        assert_eq!(
            locations
                .locate("my-app-one", || scan.call())
                .await
                .unwrap_err(),
            server_error()
        );
        tokio::time::advance(FAILED_SCAN_RETRY - Duration::from_secs(1)).await;
        locations
            .locate("my-app-one", || scan.call())
            .await
            .unwrap_err();
        assert_eq!(scan.calls(), 1);
        tokio::time::advance(Duration::from_secs(1)).await;
        locations
            .locate("my-app-one", || scan.call())
            .await
            .unwrap_err();
        assert_eq!(scan.calls(), 2);

        // A negative TTL shorter than FAILED_SCAN_RETRY wins.
        let short = Duration::from_secs(1);
        let locations = AppLocations::new(short);
        let scan = Fetch::new(Some(server_error()));
        locations
            .locate("my-app-one", || scan.call())
            .await
            .unwrap_err();
        tokio::time::advance(short).await;
        locations
            .locate("my-app-one", || scan.call())
            .await
            .unwrap_err();
        assert_eq!(scan.calls(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_scan_still_finds_apps_listed_elsewhere() {
        let locations = AppLocations::new(Duration::from_secs(30));
        let found = locations
            .locate("app-one", || async {
                locations.record_listing("osc-fr1", &[app("app-one")]);
                Some(server_error())
            })
            .await
            .unwrap();
        assert_eq!(found.as_deref(), Some("osc-fr1"));
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_misses_share_one_scan() {
        let locations = AppLocations::new(Duration::from_secs(30));
        let scans = AtomicUsize::new(0);
        let scan = || async {
            scans.fetch_add(1, Ordering::SeqCst);
            // Let the other callers queue on the scan lock meanwhile.
            tokio::time::sleep(Duration::from_secs(1)).await;
            locations.record_listing("osc-fr1", &[app("app-one")]);
            None
        };
        let results =
            futures::future::join_all((0..5).map(|_| locations.locate("app-one", scan))).await;
        assert!(results
            .iter()
            .all(|r| r.as_ref().unwrap().as_deref() == Some("osc-fr1")));
        assert_eq!(scans.load(Ordering::SeqCst), 1);
    }
}
