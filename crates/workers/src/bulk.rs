//! The bulk-job worker: on every replica, works chunks of whichever bulk job is running until
//! none is left, then waits for a job to start here (a wake-up) or polls for one started
//! elsewhere. A replica stopping finishes the chunk in hand; one killed leaves it to the
//! others (its transaction never committed).

use std::{sync::Arc, time::Duration};

use domain::bulk::BulkJobs;
use tokio::sync::watch;

use crate::mail::Wakeup;

/// How often an idle worker looks for a job started on another replica.
const POLL: Duration = Duration::from_secs(1);

pub struct BulkWorker {
    pub jobs: Arc<BulkJobs>,
    pub wakeup: Wakeup,
    /// `LATCHKEY_BULK_CUSTOMERS_PER_SECOND`: a cap on how fast this replica works jobs (to
    /// spare the database in busy hours); `None` works them as fast as it can.
    pub per_second: Option<std::num::NonZeroU32>,
    /// The session cache: a chunk that revoked sessions is confirmed on every replica before
    /// the next chunk starts.
    pub session_cache: Option<persistence::Coherence>,
}

impl BulkWorker {
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        // A chunk is at most a second's worth at the cap, taken when the cap allows it: the
        // wait comes *before* the chunk, and the limiter starts empty, so no second (the
        // first of a job, the first after an idle spell) works more than the cap.
        let rate = self.per_second.map(|n| {
            let rate = governor::RateLimiter::direct(governor::Quota::per_second(n));
            let _ = rate.check_n(n);
            (rate, n)
        });
        let limit = self
            .per_second
            .map_or(domain::bulk::CHUNK, |n| u64::from(n.get()));
        loop {
            while !*stop.borrow() {
                if let Some((rate, n)) = &rate {
                    let _ = rate.until_n_ready(*n).await;
                }
                let (worked, committed) =
                    persistence::tracking_commits(self.jobs.work(limit)).await;
                if committed.revoked
                    && let Some(cache) = &self.session_cache
                {
                    cache.confirm().await;
                }
                match worked {
                    Ok(Some(chunk)) => {
                        metrics::counter!("latchkey_bulk_customers_total", "action" => chunk.action.as_str())
                            .increment(chunk.processed);
                    }
                    Ok(None) => break,
                    Err(e) => {
                        tracing::warn!(error = %e, "a bulk chunk failed; it will be taken again");
                        break;
                    }
                }
            }
            if *stop.borrow() {
                break;
            }
            tokio::select! {
                () = self.wakeup.notified() => {},
                () = tokio::time::sleep(POLL) => {},
                _ = stop.changed() => {},
            }
        }
        tracing::info!("bulk worker stopped");
    }
}
