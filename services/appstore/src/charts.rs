//! The top charts, as pure ranking over per-app install statistics.
//!
//! - **TOP_FREE / TOP_PAID**: free (price 0) or paid apps by installs ever counted, most first;
//!   ties by package name.
//! - **TRENDING**: install growth of the last 7 UTC days (today included: days `today-6..=today`)
//!   against the 7 before (`today-13..=today-7`), with additive smoothing:
//!
//!   `score = (recent - prior) / (prior + 10)`
//!
//!   The `+ 10` is a prior of ten installs a week: it keeps a brand-new app (prior = 0) from an
//!   infinite growth rate, so an app going from 0 to 5 installs scores 0.5, below one going
//!   from 100 to 200 (0.91), while a new app with real traction (0 to 500: 50) still leads.
//!   Only apps with installs in the last 7 days are listed; ties by recent installs, then by
//!   package name. Days are days since the Unix epoch of the service's clock.

use meshwork_proto::pb::appstore::v1::Chart;

/// Milliseconds of a day.
pub const DAY_MS: i64 = 86_400_000;

/// Installs a week assumed before an app has any (the smoothing of the trending score).
pub const TRENDING_PRIOR: f64 = 10.0;

/// Days in each trending window.
pub const WINDOW_DAYS: i64 = 7;

/// Returns the day (since the epoch) of `ms`.
pub fn day_of(ms: i64) -> i64 {
    ms.div_euclid(DAY_MS)
}

/// What the charts know of an app.
#[derive(Debug, Clone, PartialEq)]
pub struct AppStats {
    pub package: String,
    pub paid: bool,
    pub total: u64,
    /// Installs of the last [`WINDOW_DAYS`] days.
    pub recent: u64,
    /// Installs of the [`WINDOW_DAYS`] days before.
    pub prior: u64,
}

/// Returns the trending score of an app (see the module docs).
pub fn trending_score(recent: u64, prior: u64) -> f64 {
    (recent as f64 - prior as f64) / (prior as f64 + TRENDING_PRIOR)
}

/// Returns whether `day` is in the recent window (`Some(true)`), the prior one (`Some(false)`)
/// or neither, as seen on `today`.
pub fn window_of(day: i64, today: i64) -> Option<bool> {
    let age = today - day;
    match age {
        0..WINDOW_DAYS => Some(true),
        WINDOW_DAYS..=13 => Some(false),
        _ => None,
    }
}

/// Ranks `apps` for `chart`: the apps on it, best first, with their scores.
pub fn rank(chart: Chart, apps: Vec<AppStats>) -> Vec<(AppStats, f64)> {
    let mut ranked: Vec<(AppStats, f64)> = match chart {
        Chart::TopFree | Chart::TopPaid => {
            let paid = chart == Chart::TopPaid;
            apps.into_iter().filter(|a| a.paid == paid).map(|a| (a, 0.0)).collect()
        }
        Chart::Trending => apps
            .into_iter()
            .filter(|a| a.recent > 0)
            .map(|a| {
                let score = trending_score(a.recent, a.prior);
                (a, score)
            })
            .collect(),
        Chart::Unspecified => Vec::new(),
    };
    match chart {
        Chart::Trending => ranked
            .sort_by(|(a, sa), (b, sb)| sb.total_cmp(sa).then(b.recent.cmp(&a.recent)).then(a.package.cmp(&b.package))),
        _ => ranked.sort_by(|(a, _), (b, _)| b.total.cmp(&a.total).then(a.package.cmp(&b.package))),
    }
    ranked
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(package: &str, paid: bool, total: u64, recent: u64, prior: u64) -> AppStats {
        AppStats { package: package.into(), paid, total, recent, prior }
    }

    fn names(r: &[(AppStats, f64)]) -> Vec<&str> {
        r.iter().map(|(a, _)| a.package.as_str()).collect()
    }

    #[test]
    fn top_charts_split_free_and_paid() {
        let apps = vec![app("a.a", false, 5, 0, 0), app("b.b", true, 9, 0, 0), app("c.c", false, 7, 0, 0)];
        assert_eq!(names(&rank(Chart::TopFree, apps.clone())), ["c.c", "a.a"]);
        assert_eq!(names(&rank(Chart::TopPaid, apps)), ["b.b"]);
    }

    #[test]
    fn trending_is_smoothed_growth() {
        assert_eq!(trending_score(5, 0), 0.5);
        assert!((trending_score(200, 100) - 100.0 / 110.0).abs() < 1e-12);
        let apps = vec![
            app("new.small", false, 5, 5, 0),
            app("steady.big", false, 1000, 100, 100),
            app("doubling.app", false, 300, 200, 100),
            app("new.hit", false, 500, 500, 0),
            app("asleep.app", false, 50, 0, 40),
        ];
        assert_eq!(names(&rank(Chart::Trending, apps)), ["new.hit", "doubling.app", "new.small", "steady.big"]);
    }

    #[test]
    fn windows() {
        assert_eq!(window_of(100, 100), Some(true));
        assert_eq!(window_of(94, 100), Some(true));
        assert_eq!(window_of(93, 100), Some(false));
        assert_eq!(window_of(87, 100), Some(false));
        assert_eq!(window_of(86, 100), None);
        assert_eq!(window_of(101, 100), None);
        assert_eq!(day_of(-1), -1);
    }
}
