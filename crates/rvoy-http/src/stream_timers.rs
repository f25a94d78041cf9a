//! A stream's own timers, as the HTTP connection manager runs them:
//! `stream_idle_timeout` (or the route's `idle_timeout`), `request_timeout`
//! and `max_stream_duration` (or the route's override).
//!
//! The timers are lazy: activity only records an instant in a [`Cell`], and the
//! single sleep in [`StreamTimers::run`] recomputes the earliest deadline when
//! it wakes, so busy streams never touch the timer wheel per chunk. The
//! [`Timed`] wrapper notes activity on the downstream as the request body is
//! read and the response written.

use std::cell::Cell;
use std::future::Future;
use std::rc::Rc;
use std::time::Duration;

use tokio::time::Instant;

use bytes::Bytes;
use http::{HeaderMap, StatusCode};

use crate::downstream::{Downstream, DownstreamError, Protocol};

/// Which stream timer fired.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamTimeout {
    /// `stream_idle_timeout` or the route's `idle_timeout`.
    Idle,
    /// `request_timeout`: the request was not fully received in time.
    Request,
    /// `max_stream_duration`.
    MaxDuration,
}

impl StreamTimeout {
    /// The local reply body Envoy sends.
    pub fn body(self) -> &'static str {
        match self {
            StreamTimeout::Idle => "stream timeout",
            StreamTimeout::Request => "request timeout",
            StreamTimeout::MaxDuration => "downstream duration timeout",
        }
    }

    /// `%RESPONSE_CODE_DETAILS%`.
    pub fn details(self) -> &'static str {
        match self {
            StreamTimeout::Idle => "stream_idle_timeout",
            StreamTimeout::Request => "request_overall_timeout",
            StreamTimeout::MaxDuration => "max_duration_timeout",
        }
    }
}

/// The timer state of one stream, shared by the stream and its downstream wrapper.
#[derive(Debug)]
pub struct StreamTimers {
    start: Instant,
    idle: Cell<Option<Duration>>,
    last_activity: Cell<Instant>,
    request_deadline: Option<Instant>,
    max_duration: Cell<Option<Duration>>,
    request_complete: Cell<Option<Instant>>,
    response_started: Cell<bool>,
    /// Wakes [`StreamTimers::run`] when a route changes the deadlines.
    changed: tokio::sync::Notify,
}

impl StreamTimers {
    /// Timers for a stream that starts now. `request_complete`: the request
    /// head ended the stream (no body).
    pub fn new(
        idle: Option<Duration>,
        request_timeout: Option<Duration>,
        max_duration: Option<Duration>,
        request_complete: bool,
    ) -> Self {
        let start = crate::clock::tokio_now();
        StreamTimers {
            start,
            idle: Cell::new(idle),
            last_activity: Cell::new(start),
            request_deadline: request_timeout.map(|t| start + t),
            max_duration: Cell::new(max_duration),
            request_complete: Cell::new(request_complete.then_some(start)),
            response_started: Cell::new(false),
            changed: tokio::sync::Notify::new(),
        }
    }

    /// Applies the route's `idle_timeout` / `max_stream_duration` (an explicit
    /// zero disables the timer, as in Envoy).
    pub fn apply_route(&self, idle: Option<Duration>, max_duration: Option<Duration>) {
        if let Some(t) = idle {
            self.idle.set((!t.is_zero()).then_some(t));
            self.touch();
        }
        if let Some(t) = max_duration {
            self.max_duration.set((!t.is_zero()).then_some(t));
        }
        if idle.is_some() || max_duration.is_some() {
            self.changed.notify_one();
        }
    }

    /// Sets the max stream duration from a request's `grpc-timeout` (see
    /// [`crate::grpc::apply_route_timeout`]); zero expires at once.
    pub fn set_max_duration(&self, d: Duration) {
        self.max_duration.set(Some(d));
    }

    /// Records activity on the stream (resets the idle timer).
    pub fn touch(&self) {
        if self.idle.get().is_some() {
            self.last_activity.set(crate::clock::tokio_now());
        }
    }

    /// The time of the last activity on the stream.
    pub fn last_activity(&self) -> std::time::Instant {
        self.last_activity.get().into_std()
    }

    /// Whether the whole request has been received.
    pub fn request_complete(&self) -> bool {
        self.request_complete.get().is_some()
    }

    /// When the whole request had been received.
    pub fn request_completed_at(&self) -> Option<std::time::Instant> {
        self.request_complete.get().map(Instant::into_std)
    }

    fn set_request_complete(&self) {
        if self.request_complete.get().is_none() {
            self.request_complete.set(Some(crate::clock::tokio_now()));
        }
    }

    /// Whether response headers have gone downstream.
    pub fn response_started(&self) -> bool {
        self.response_started.get()
    }

    fn deadlines(&self) -> [(Option<Instant>, StreamTimeout); 3] {
        [
            (
                self.idle.get().map(|t| self.last_activity.get() + t),
                StreamTimeout::Idle,
            ),
            (
                self.request_deadline
                    .filter(|_| self.request_complete.get().is_none()),
                StreamTimeout::Request,
            ),
            (
                self.max_duration.get().map(|t| self.start + t),
                StreamTimeout::MaxDuration,
            ),
        ]
    }

    /// The earliest armed deadline.
    fn next_deadline(&self) -> Option<Instant> {
        self.deadlines().iter().filter_map(|(d, _)| *d).min()
    }

    /// The timer that has expired at `now`, if any (the earliest one).
    fn expired(&self, now: Instant) -> Option<StreamTimeout> {
        self.deadlines()
            .iter()
            .filter_map(|(d, k)| d.filter(|d| *d <= now).map(|d| (d, *k)))
            .min_by_key(|(d, _)| *d)
            .map(|(_, k)| k)
    }

    /// Drives `fut` until it completes or a timer fires.
    /// The stream is lent pinned (not moved in) so its state is stored once,
    /// in the caller's future.
    /// The deadline waits on `sleeps`, the worker's reusable timers.
    pub async fn run<F: Future>(
        &self,
        mut fut: std::pin::Pin<&mut F>,
        sleeps: &crate::sleep_pool::SleepPool,
    ) -> Result<F::Output, StreamTimeout> {
        loop {
            let Some(deadline) = self.next_deadline() else {
                tokio::select! {
                    biased;
                    out = &mut fut => return Ok(out),
                    _ = self.changed.notified() => continue,
                }
            };
            tokio::select! {
                biased;
                out = &mut fut => return Ok(out),
                _ = sleeps.sleep_until(deadline) => {
                    if let Some(kind) = self.expired(crate::clock::tokio_now()) {
                        return Err(kind);
                    }
                }
                // A route shortened a deadline: compute it again.
                _ = self.changed.notified() => {}
            }
        }
    }
}

/// A downstream that reports its activity to the stream's timers.
pub struct Timed<'a, D> {
    pub inner: &'a mut D,
    pub timers: Rc<StreamTimers>,
}

impl<D: Downstream> Downstream for Timed<'_, D> {
    fn protocol(&self) -> Protocol {
        self.inner.protocol()
    }

    async fn read_body(&mut self) -> Result<Option<Bytes>, DownstreamError> {
        let r = self.inner.read_body().await;
        self.timers.touch();
        if !matches!(r, Ok(Some(_))) || self.inner.body_complete() {
            self.timers.set_request_complete();
        }
        r
    }

    fn body_complete(&self) -> bool {
        self.inner.body_complete()
    }

    async fn read_raw(&mut self) -> Result<Option<Bytes>, DownstreamError> {
        let r = self.inner.read_raw().await;
        self.timers.touch();
        r
    }

    fn take_trailers(&mut self) -> Option<HeaderMap> {
        self.inner.take_trailers()
    }

    async fn closed(&mut self) {
        self.inner.closed().await
    }

    async fn send_continue(&mut self) -> Result<(), DownstreamError> {
        self.inner.send_continue().await
    }

    fn encode_headers(
        &mut self,
        status: StatusCode,
        headers: &mut HeaderMap,
        end_stream: bool,
        info: &crate::request_info::RequestInfo,
    ) {
        self.inner.encode_headers(status, headers, end_stream, info);
    }

    async fn send_head(
        &mut self,
        status: StatusCode,
        reason: Option<&[u8]>,
        headers: &mut HeaderMap,
        end_stream: bool,
    ) -> Result<(), DownstreamError> {
        self.timers.response_started.set(true);
        let r = self
            .inner
            .send_head(status, reason, headers, end_stream)
            .await;
        self.timers.touch();
        r
    }

    async fn send_data(&mut self, data: Bytes, end_stream: bool) -> Result<(), DownstreamError> {
        let r = self.inner.send_data(data, end_stream).await;
        self.timers.touch();
        r
    }

    async fn send_data_parts(&mut self, parts: &[Bytes]) -> Result<(), DownstreamError> {
        let r = self.inner.send_data_parts(parts).await;
        self.timers.touch();
        r
    }

    async fn send_trailers(&mut self, trailers: HeaderMap) -> Result<(), DownstreamError> {
        let r = self.inner.send_trailers(trailers).await;
        self.timers.touch();
        r
    }

    fn bytes_sent(&self) -> u64 {
        self.inner.bytes_sent()
    }

    fn bytes_received(&self) -> u64 {
        self.inner.bytes_received()
    }

    fn set_close(&mut self) {
        self.inner.set_close();
    }

    fn use_http11_status_line(&mut self) {
        self.inner.use_http11_status_line();
    }

    fn close_request_counts(&mut self, stage: crate::downstream::CloseStage) {
        self.inner.close_request_counts(stage);
    }

    fn answered_later(&mut self) {
        self.inner.answered_later();
    }

    fn timers(&self) -> Option<Rc<StreamTimers>> {
        Some(self.timers.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sleep_pool::SleepPool;

    #[tokio::test(start_paused = true)]
    async fn idle_timer_fires_after_inactivity() {
        let t = StreamTimers::new(Some(Duration::from_secs(1)), None, None, true);
        let r = t
            .run(
                std::pin::pin!(std::future::pending::<()>()),
                &SleepPool::default(),
            )
            .await;
        assert_eq!(r, Err(StreamTimeout::Idle));
    }

    #[tokio::test(start_paused = true)]
    async fn activity_postpones_idle_timer() {
        let t = Rc::new(StreamTimers::new(
            Some(Duration::from_millis(100)),
            None,
            None,
            true,
        ));
        let t2 = t.clone();
        let work = async move {
            for _ in 0..5 {
                tokio::time::sleep(Duration::from_millis(60)).await;
                t2.touch();
            }
            7
        };
        assert_eq!(
            t.run(std::pin::pin!(work), &SleepPool::default()).await,
            Ok(7)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn request_timer_stops_when_request_complete() {
        let t = StreamTimers::new(None, Some(Duration::from_millis(50)), None, true);
        let work = async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            1
        };
        assert_eq!(
            t.run(std::pin::pin!(work), &SleepPool::default()).await,
            Ok(1)
        );
        let t = StreamTimers::new(None, Some(Duration::from_millis(50)), None, false);
        assert_eq!(
            t.run(
                std::pin::pin!(std::future::pending::<()>()),
                &SleepPool::default()
            )
            .await,
            Err(StreamTimeout::Request)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_route_can_shorten_the_idle_timer() {
        let t = Rc::new(StreamTimers::new(
            Some(Duration::from_secs(10)),
            None,
            None,
            true,
        ));
        let t2 = t.clone();
        let work = async move {
            tokio::time::sleep(Duration::from_millis(10)).await;
            t2.apply_route(Some(Duration::from_millis(100)), None);
            std::future::pending::<()>().await
        };
        let started = Instant::now();
        assert_eq!(
            t.run(std::pin::pin!(work), &SleepPool::default()).await,
            Err(StreamTimeout::Idle)
        );
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn route_zero_disables_and_earliest_wins() {
        let t = StreamTimers::new(
            Some(Duration::from_millis(10)),
            None,
            Some(Duration::from_millis(30)),
            true,
        );
        t.apply_route(Some(Duration::ZERO), None);
        assert_eq!(
            t.run(
                std::pin::pin!(std::future::pending::<()>()),
                &SleepPool::default()
            )
            .await,
            Err(StreamTimeout::MaxDuration)
        );
    }
}
