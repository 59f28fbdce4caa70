//! Isolation between apps: an error in one app's release, spec or rollout is logged once
//! (with the app's name) and that app is skipped; every other app goes on.

use std::collections::HashMap;
use std::sync::Mutex;

/// Which loop met the error: the rollout driver or the desired-set view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stage {
    Driver,
    View,
}

impl Stage {
    fn as_str(&self) -> &'static str {
        match self {
            Stage::Driver => "rollout driver",
            Stage::View => "desired-set view",
        }
    }
}

/// The last error of each (stage, app), so a broken app is logged once, not every tick.
#[derive(Debug, Default)]
pub struct AppErrors {
    last: Mutex<HashMap<(Stage, String), String>>,
}

impl AppErrors {
    /// Records that `app` failed in `stage`; logs when the error is new for that app.
    pub fn failed(&self, stage: Stage, app: &str, error: &dyn std::fmt::Display) {
        let msg = error.to_string();
        let mut last = self.last.lock().expect("app errors lock");
        if last.get(&(stage, app.to_string())) != Some(&msg) {
            tracing::error!(app = %app, error = %msg, "{}: app {app} skipped; other apps go on", stage.as_str());
            last.insert((stage, app.to_string()), msg);
        }
    }

    /// Records that `app` went through `stage` without error.
    pub fn ok(&self, stage: Stage, app: &str) {
        let mut last = self.last.lock().expect("app errors lock");
        if last.remove(&(stage, app.to_string())).is_some() {
            tracing::info!(app = %app, "{}: app {app} recovered", stage.as_str());
        }
    }

    /// Apps failing in `stage` now, with their error.
    pub fn failing(&self, stage: Stage) -> Vec<(String, String)> {
        let last = self.last.lock().expect("app errors lock");
        let mut out: Vec<_> = last
            .iter()
            .filter(|((s, _), _)| *s == stage)
            .map(|((_, a), e)| (a.clone(), e.clone()))
            .collect();
        out.sort();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_is_kept_per_app_until_it_recovers() {
        let e = AppErrors::default();
        e.failed(Stage::Driver, "bad", &"corrupt");
        e.failed(Stage::Driver, "bad", &"corrupt");
        e.failed(Stage::View, "other", &"x");
        assert_eq!(
            e.failing(Stage::Driver),
            vec![("bad".to_string(), "corrupt".to_string())]
        );
        e.ok(Stage::Driver, "bad");
        assert!(e.failing(Stage::Driver).is_empty());
        assert_eq!(e.failing(Stage::View).len(), 1);
    }
}
