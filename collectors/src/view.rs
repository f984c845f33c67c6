//! Running the views of a poll, the same way for every engine: each is timed, its outcome recorded for
//! `dbwatch_collector_success` / `_duration_seconds`, its failures logged without flooding ([`ViewLog`]).
//!
//! A view that fails on the server (a privilege, a missing extension, a command the server refuses) is recorded
//! and the poll goes on. A failure that leaves nothing for the remaining views (the connection itself is gone,
//! or a client-side cut left it mid-answer) ends the poll. Each engine says which is which through
//! [`ViewError`], implemented by its driver's error wrapper.

use std::fmt::Display;
use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

use crate::error::{CollectError, ErrorKind};
use crate::view_log::ViewLog;
use crate::ViewOutcome;

/// What the runner needs to know of an engine's query error.
pub trait ViewError: Display {
    /// The bounded class of the failure.
    fn kind(&self) -> ErrorKind;

    /// Whether the failure ends the poll, since the remaining views could not run either. By default, a failure
    /// of the connection.
    fn ends_poll(&self) -> bool {
        self.kind() == ErrorKind::Connect
    }

    /// Whether the failure says the server lacks the view (a capability, asked once per connection): logged
    /// once at info rather than as a failure.
    fn lacks_view(&self) -> bool {
        false
    }

    /// The failure as the poll's error, naming the target and the view.
    fn into_collect_error(self, target: &str, view: &'static str) -> CollectError;
}

/// Runs one poll's views; see the module's documentation.
pub struct ViewRunner<'a> {
    views: &'a mut Vec<ViewOutcome>,
    log: &'a mut ViewLog,
    /// One outcome per view and poll, durations of repeated runs added up, the first failure's class kept
    /// (an API called once per table); otherwise one outcome per run.
    merge_repeats: bool,
}

impl<'a> ViewRunner<'a> {
    /// A runner recording one outcome per run of a view.
    pub fn new(views: &'a mut Vec<ViewOutcome>, log: &'a mut ViewLog) -> Self {
        ViewRunner {
            views,
            log,
            merge_repeats: false,
        }
    }

    /// A runner recording one outcome per view and poll, however often it runs.
    pub fn merging(views: &'a mut Vec<ViewOutcome>, log: &'a mut ViewLog) -> Self {
        ViewRunner {
            merge_repeats: true,
            ..ViewRunner::new(views, log)
        }
    }

    /// Runs a view the poll cannot do without: any failure fails the poll.
    pub async fn required<T, E: ViewError>(
        &mut self,
        view: &'static str,
        query: impl Future<Output = Result<T, E>>,
    ) -> Result<T, CollectError> {
        let started = Instant::now();
        let result = query.await;
        let duration = started.elapsed();
        match result {
            Ok(value) => {
                self.record(view, duration, None);
                Ok(value)
            }
            Err(error) => Err(error.into_collect_error(self.log.target(), view)),
        }
    }

    /// Runs a view the poll can do without: `None` when it failed (recorded and logged).
    pub async fn view<T, E: ViewError>(
        &mut self,
        view: &'static str,
        query: impl Future<Output = Result<T, E>>,
    ) -> Result<Option<T>, CollectError> {
        Ok(self.try_view(view, query).await?.ok())
    }

    /// As [`ViewRunner::view`], giving the failure's class to a caller that acts on it (an unsupported view
    /// becomes a capability not asked again).
    pub async fn try_view<T, E: ViewError>(
        &mut self,
        view: &'static str,
        query: impl Future<Output = Result<T, E>>,
    ) -> Result<Result<T, ErrorKind>, CollectError> {
        let started = Instant::now();
        let result = query.await;
        self.settle(view, started.elapsed(), result)
    }

    /// Records a view that ran for `duration`, for engines that look at an answer before it is judged.
    pub fn settle<T, E: ViewError>(
        &mut self,
        view: &'static str,
        duration: Duration,
        result: Result<T, E>,
    ) -> Result<Result<T, ErrorKind>, CollectError> {
        match result {
            Ok(value) => {
                self.log.succeeded(view);
                self.record(view, duration, None);
                Ok(Ok(value))
            }
            Err(error) if error.ends_poll() => {
                Err(error.into_collect_error(self.log.target(), view))
            }
            Err(error) => {
                let kind = error.kind();
                if error.lacks_view() {
                    tracing::info!(view, error = %error, "server lacks the view; not asked again on this connection");
                } else {
                    self.log.failed(view, &error);
                }
                self.record(view, duration, Some(kind));
                Ok(Err(kind))
            }
        }
    }

    /// Marks the view that just ran as failed although it produced data (some of its parts were unreadable).
    pub fn mark_last_failed(&mut self, kind: ErrorKind) {
        if let Some(last) = self.views.last_mut() {
            last.error = Some(kind);
        }
    }

    fn record(&mut self, view: &'static str, duration: Duration, error: Option<ErrorKind>) {
        if self.merge_repeats {
            if let Some(outcome) = self.views.iter_mut().find(|outcome| outcome.view == view) {
                outcome.duration += duration;
                outcome.error = outcome.error.or(error);
                return;
            }
        }
        self.views.push(ViewOutcome {
            view,
            duration,
            error,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Failure(ErrorKind);

    impl Display for Failure {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "failed as {}", self.0.as_str())
        }
    }

    impl ViewError for Failure {
        fn kind(&self) -> ErrorKind {
            self.0
        }

        fn into_collect_error(self, target: &str, view: &'static str) -> CollectError {
            match self.0 {
                ErrorKind::Connect => CollectError::ConnectionLost {
                    view,
                    source: format!("{target}: {self}").into(),
                },
                _ => CollectError::Query {
                    view,
                    source: self.to_string().into(),
                },
            }
        }
    }

    #[tokio::test]
    async fn a_failed_view_is_recorded_and_a_lost_connection_ends_the_poll() {
        let mut views = Vec::new();
        let mut log = ViewLog::new("pg-main");
        let mut run = ViewRunner::new(&mut views, &mut log);
        let answered = run.view("a", async { Ok::<_, Failure>(7) }).await;
        assert_eq!(answered.ok().flatten(), Some(7));
        let refused = run
            .try_view("b", async { Err::<(), _>(Failure(ErrorKind::Auth)) })
            .await;
        assert!(matches!(refused, Ok(Err(ErrorKind::Auth))), "{refused:?}");
        let lost = run
            .view("c", async { Err::<(), _>(Failure(ErrorKind::Connect)) })
            .await;
        assert!(
            matches!(lost, Err(CollectError::ConnectionLost { view: "c", .. })),
            "{lost:?}"
        );
        let required = run
            .required("d", async { Err::<(), _>(Failure(ErrorKind::Query)) })
            .await;
        assert_eq!(
            required.map_err(|error| error.to_string()),
            Err("view d failed: failed as query".to_owned())
        );
        let recorded: Vec<(&str, Option<ErrorKind>)> =
            views.iter().map(|view| (view.view, view.error)).collect();
        assert_eq!(recorded, vec![("a", None), ("b", Some(ErrorKind::Auth))]);
    }

    #[tokio::test]
    async fn a_merging_runner_keeps_one_outcome_per_view() {
        let mut views = Vec::new();
        let mut log = ViewLog::new("sessions");
        let mut run = ViewRunner::merging(&mut views, &mut log);
        run.view("describe_table", async { Ok::<_, Failure>(()) })
            .await
            .expect("not fatal");
        run.view("describe_table", async {
            Err::<(), _>(Failure(ErrorKind::Query))
        })
        .await
        .expect("not fatal");
        run.view("describe_table", async {
            Err::<(), _>(Failure(ErrorKind::Timeout))
        })
        .await
        .expect("not fatal");
        assert_eq!(views.len(), 1);
        assert_eq!(views[0].error, Some(ErrorKind::Query));
    }
}
