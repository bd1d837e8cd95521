//! When the scheduler runs its passes: every `PAASTIS_SCHEDULER_INTERVAL`
//! seconds, or at the times of Paastis's
//! `START_AND_STOP_CHECKING_INTERVAL_CRON` expression.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Local, TimeZone};
use croner::Cron;

/// The cadence of the scheduler's passes.
#[derive(Clone)]
pub enum PassSchedule {
    /// A pass at start, then one every period (a late pass delays the next).
    Every(Duration),
    /// A pass at each time the cron expression names, in the local time
    /// zone (as Paastis's node-cron did). Five fields, or six with seconds.
    Cron(CronSchedule),
}

impl From<Duration> for PassSchedule {
    fn from(period: Duration) -> Self {
        PassSchedule::Every(period)
    }
}

impl fmt::Debug for PassSchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for PassSchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PassSchedule::Every(d) => write!(f, "every {} s", d.as_secs()),
            PassSchedule::Cron(c) => write!(f, "at cron {:?}", c.expr),
        }
    }
}

/// A parsed cron expression.
#[derive(Clone)]
pub struct CronSchedule {
    expr: String,
    /// Shared: the parsed expression is large and never changes.
    cron: Arc<Cron>,
}

impl CronSchedule {
    /// Parses `expr` (5 fields, or 6 with seconds first). Refused when it
    /// never fires (e.g. the 31st of February): the scheduler would never
    /// run and nothing would say so.
    pub fn parse(expr: &str) -> Result<Self, String> {
        let cron = Cron::new(expr)
            .with_seconds_optional()
            .parse()
            .map_err(|e| format!("{expr:?} is not a cron expression: {e}"))?;
        let schedule = Self {
            expr: expr.to_owned(),
            cron: Arc::new(cron),
        };
        if schedule.next_after(&Local::now()).is_none() {
            return Err(format!("{expr:?} never fires"));
        }
        Ok(schedule)
    }

    pub fn expr(&self) -> &str {
        &self.expr
    }

    /// The first time strictly after `now` that the expression names.
    pub fn next_after<Tz: TimeZone>(&self, now: &DateTime<Tz>) -> Option<DateTime<Tz>> {
        self.cron.find_next_occurrence(now, false).ok()
    }

    /// How long from `now` to the next time; zero if that is past already.
    pub fn delay_after<Tz: TimeZone>(&self, now: &DateTime<Tz>) -> Option<Duration> {
        let next = self.next_after(now)?;
        Some(
            next.signed_duration_since(now.clone())
                .to_std()
                .unwrap_or(Duration::ZERO),
        )
    }

    /// The gap between the next two times after `now`: the period of a
    /// regular expression such as `*/5 * * * *`.
    pub fn period_after<Tz: TimeZone>(&self, now: &DateTime<Tz>) -> Option<Duration> {
        let first = self.next_after(now)?;
        let second = self.next_after(&first)?;
        second.signed_duration_since(first).to_std().ok()
    }
}

impl PassSchedule {
    /// The ticks of this schedule, on tokio's clock.
    pub fn ticks(&self) -> Ticks {
        match self {
            PassSchedule::Every(period) => {
                let mut interval = tokio::time::interval(*period);
                interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                Ticks::Every(interval)
            }
            PassSchedule::Cron(c) => Ticks::Cron(c.clone()),
        }
    }
}

/// A running [`PassSchedule`].
pub enum Ticks {
    Every(tokio::time::Interval),
    Cron(CronSchedule),
}

/// Longest single wait on a cron schedule: the next time is computed again
/// after it, so a jump of the wall clock (suspend, NTP) is caught up.
const MAX_CRON_WAIT: Duration = Duration::from_secs(3_600);

impl Ticks {
    /// Waits for the next tick.
    pub async fn tick(&mut self) {
        match self {
            Ticks::Every(interval) => {
                interval.tick().await;
            }
            Ticks::Cron(c) => loop {
                // `parse` checked that it fires; should it stop firing
                // (years later), wait the maximum and look again.
                let delay = c.delay_after(&Local::now()).unwrap_or(MAX_CRON_WAIT);
                if delay <= MAX_CRON_WAIT {
                    tokio::time::sleep(delay).await;
                    return;
                }
                tokio::time::sleep(MAX_CRON_WAIT).await;
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn every_five_minutes_runs_every_five_minutes() {
        let c = CronSchedule::parse("*/5 * * * *").unwrap();
        let now = at("2026-11-30T10:02:30Z");
        assert_eq!(c.next_after(&now), Some(at("2026-11-30T10:05:00Z")));
        assert_eq!(c.delay_after(&now), Some(Duration::from_secs(150)));
        assert_eq!(c.period_after(&now), Some(Duration::from_secs(300)));
        // On a tick, the next one is a whole period away.
        let tick = at("2026-11-30T10:05:00Z");
        assert_eq!(c.next_after(&tick), Some(at("2026-11-30T10:10:00Z")));
    }

    #[test]
    fn paastis_default_and_seconds_fields() {
        let every_minute = CronSchedule::parse("* * * * *").unwrap();
        assert_eq!(
            every_minute.period_after(&at("2026-11-30T10:00:10Z")),
            Some(Duration::from_secs(60))
        );
        let every_30s = CronSchedule::parse("*/30 * * * * *").unwrap();
        assert_eq!(
            every_30s.period_after(&at("2026-11-30T10:00:10Z")),
            Some(Duration::from_secs(30))
        );
    }

    #[test]
    fn bad_expressions_are_refused() {
        for expr in ["every 5 minutes", "*/5 * * *", "61 * * * *", "0 0 31 2 *"] {
            assert!(CronSchedule::parse(expr).is_err(), "{expr}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_interval_ticks_at_once_then_every_period() {
        let mut ticks = PassSchedule::from(Duration::from_secs(60)).ticks();
        let start = tokio::time::Instant::now();
        ticks.tick().await;
        assert_eq!(start.elapsed(), Duration::ZERO);
        ticks.tick().await;
        assert_eq!(start.elapsed(), Duration::from_secs(60));
    }
}
