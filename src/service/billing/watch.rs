//! `WatchBillableOrganizations`: billing events read from the log, resumable
//! from any replica. Every watch of a process shares the log's tail and the
//! current totals, so a thousand watches waking for one commit read the
//! database about once. An initial state is read and sent a page at a time,
//! so a watch holds at most one page of it.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use super::reads::{summary_in, with_members};
use crate::domain::billing::{
    BecameBillable, BillingSummary, BudgetThresholdCrossed, OrganizationUsage, PeriodStarted,
    Pricing, WatchCursor,
};
use crate::domain::events::{EventFilter, EventKind};
use crate::domain::paging::PageTokens;
use crate::domain::time::{BillingPeriod, Clock, Micros};
use crate::domain::{Error, Reason, Result};
use crate::events::horizon;
use crate::events::{EventRow, Notifier, WatchHub, reader};
use crate::store::{Db, repo::billing as repo};

/// Events read from the log at a time by one watch.
const WATCH_READ_LIMIT: usize = 256;
/// Messages buffered per watch: a slow client fills its own buffer and
/// slows only its own stream.
const WATCH_BUFFER: usize = 64;
/// How stale the totals sent with watch messages may be; they always
/// include every event up to the message they go with.
const WATCH_SUMMARY_MAX_AGE: Duration = Duration::from_millis(250);
/// Billable organizations read at a time for an initial state, each with
/// at most `USAGE_MEMBER_IDS_MAX` member ids.
const WATCH_INITIAL_PAGE: u64 = 100;

/// The kinds a watch delivers.
const WATCHED_KINDS: &[EventKind] = &[
    EventKind::BillingOrganizationBecameBillable,
    EventKind::BillingPeriodStarted,
    EventKind::BillingBudgetThresholdCrossed,
];

/// How watches behave, from configuration.
#[derive(Debug, Clone, Copy)]
pub struct WatchSettings {
    /// How long an idle watch waits before it sends a checkpoint.
    pub checkpoint_interval: Duration,
    /// How long a cursor stays resumable.
    pub retention: Duration,
}

/// What a watch sends.
#[derive(Debug, Clone)]
pub enum WatchEvent {
    BecameBillable(OrganizationUsage),
    PeriodStarted(String),
    BudgetThresholdCrossed(BudgetThresholdCrossed),
    Checkpoint(Micros),
}

/// One message of a watch: a resumable position, an event and the totals of
/// the current period.
#[derive(Debug, Clone)]
pub struct WatchMessage {
    pub cursor: String,
    pub event: WatchEvent,
    pub summary: BillingSummary,
}

/// What all the watches of a process share.
#[derive(Debug)]
struct Shared {
    /// The log's tail, shared with every other watch of the process.
    tail: Arc<reader::SharedTail>,
    /// What the tail is read for: billing events.
    filter: EventFilter,
    summary: tokio::sync::Mutex<Option<SharedSummary>>,
}

/// What an initial state sends: the organizations of `period` whose
/// transition has a position up to the watch's starting one. Those are the
/// ones with a billable order up to `through_order` (orders are handed out
/// one by one, in the transaction of the transition, and never taken back
/// within a period) except the orders in `pending`: transitions committed
/// whose events get their positions later (on PostgreSQL, after commit), so
/// the live stream sends them.
#[derive(Debug, Clone)]
struct InitialState {
    period: BillingPeriod,
    through_order: i64,
    pending: BTreeSet<i64>,
}

/// Totals computed for watches, with the log position they include.
#[derive(Debug)]
struct SharedSummary {
    seq: i64,
    computed: tokio::time::Instant,
    summary: BillingSummary,
}

/// Opens watches.
#[derive(Debug, Clone)]
pub struct BillingWatch {
    db: Db,
    clock: Arc<dyn Clock>,
    pricing: Pricing,
    settings: WatchSettings,
    notifier: Notifier,
    /// Becomes true when the server starts shutting down; streams end with
    /// UNAVAILABLE then.
    shutdown: watch::Receiver<bool>,
    tokens: PageTokens,
    shared: Arc<Shared>,
}

/// Refuses a cursor whose age passes the retention. Its age is judged by the
/// log, never by anything the client sends: it is the age of the oldest event
/// the cursor has not seen (none: the cursor is current, however long ago it
/// was issued).
pub async fn check_age(db: &Db, seq: i64, now: Micros, retention: Duration) -> Result<()> {
    if seq < crate::events::pruning::pruned_through(db.conn()).await? {
        return Err(cursor_expired());
    }
    let retention = i64::try_from(retention.as_micros()).unwrap_or(i64::MAX);
    match reader::first_after(db.conn(), seq).await? {
        Some((_, time)) if time < now.saturating_sub(retention) => Err(cursor_expired()),
        _ => Ok(()),
    }
}

/// A cursor (or page token) older than what the log still holds.
pub(crate) fn cursor_expired() -> Error {
    Error::OutOfRange(
        Reason::CursorExpired,
        "the cursor is older than the retention; start again without it".into(),
    )
}

/// How a watch ends when the server shuts down.
pub(crate) fn shutting_down() -> Error {
    Error::Unavailable(
        Reason::ShuttingDown,
        "the server is shutting down; resume from the last cursor".into(),
    )
}

impl BillingWatch {
    pub fn new(
        db: Db,
        clock: Arc<dyn Clock>,
        pricing: Pricing,
        settings: WatchSettings,
        hub: WatchHub,
        tokens: PageTokens,
    ) -> Self {
        let WatchHub {
            notifier,
            shutdown,
            tail,
        } = hub;
        BillingWatch {
            db,
            clock,
            pricing,
            settings,
            notifier,
            shutdown,
            tokens,
            shared: Arc::new(Shared {
                tail,
                filter: EventFilter {
                    kinds: WATCHED_KINDS.to_vec(),
                    organization_id: None,
                },
                summary: tokio::sync::Mutex::new(None),
            }),
        }
    }

    /// Opens a watch of billing events. Checks the cursor (and, with
    /// `send_initial_state`, reads the initial state with the log position in
    /// one snapshot) before answering; then a task of its own reads the log
    /// and feeds a bounded channel, so a slow client holds back only itself.
    /// With `start` set, `send_initial_state` is not needed and ignored: the
    /// replay from the cursor has no gap.
    /// Reads a cursor of this stream; empty means none.
    pub fn cursor(&self, field: &'static str, value: &str) -> Result<Option<WatchCursor>> {
        WatchCursor::decode(&self.tokens, field, value)
    }

    pub async fn open(
        &self,
        start: Option<WatchCursor>,
        send_initial_state: bool,
    ) -> Result<mpsc::Receiver<Result<WatchMessage>>> {
        if *self.shutdown.borrow() {
            return Err(shutting_down());
        }
        // Subscribe before reading the head, so no commit after it is missed.
        // The head covers every write acknowledged before this call: the
        // live stream starts after it, and a cursor's age is judged by the
        // events it has not seen.
        let wake = self.notifier.subscribe();
        let now = self.clock.now_micros();
        let (after, initial) = match start {
            Some(cursor) => {
                let head = reader::head(self.db.conn()).await?;
                if cursor.seq > head {
                    return Err(Error::InvalidToken(
                        Reason::CursorInvalid,
                        "start_cursor",
                        "start_cursor is not a cursor of this stream".into(),
                    ));
                }
                check_age(&self.db, cursor.seq, now, self.settings.retention).await?;
                // The replay starts at once, without waiting for the follower.
                self.notifier.committed(head);
                (cursor.seq, None)
            }
            None if send_initial_state => {
                let (head, initial) = self
                    .initial_position(BillingPeriod::containing_micros(now))
                    .await?;
                (head, Some(initial))
            }
            None => (reader::head(self.db.conn()).await?, None),
        };
        let (sender, receiver) = mpsc::channel(WATCH_BUFFER);
        let stream = WatchTask {
            watch: self.clone(),
            sender,
            wake,
            shutdown: self.shutdown.clone(),
            after,
        };
        tokio::spawn(stream.run(initial));
        Ok(receiver)
    }

    /// The log position, how many organizations of the period were billable
    /// then and which of those transitions lie after that position: the
    /// head of the log, then one short snapshot, which sees every event up
    /// to the head and perhaps some after it. Every transition the snapshot
    /// does not see has a larger billable order and, like the ones after the
    /// head, a larger sequence number, so the live stream from the head and
    /// the initial state up to that order, less the ones after the head,
    /// together send each transition once.
    async fn initial_position(&self, period: BillingPeriod) -> Result<(i64, InitialState)> {
        let p = period.to_string();
        let head = reader::head(self.db.conn()).await?;
        let txn = self.db.begin_snapshot().await?;
        let through_order = repo::period_totals(&txn, &p).await?.billable_organizations;
        let mut pending = BTreeSet::new();
        for payload in
            horizon::payloads_after(&txn, EventKind::BillingOrganizationBecameBillable, head)
                .await?
        {
            let event: BecameBillable = serde_json::from_str(&payload).map_err(Error::internal)?;
            if event.usage.period == p {
                pending.insert(event.billable_order);
            }
        }
        txn.commit().await?;
        Ok((
            head,
            InitialState {
                period,
                through_order,
                pending,
            },
        ))
    }

    /// One page of an initial state: the billable organizations after
    /// `after_order` up to its end, read in a snapshot of its own so no
    /// transaction stays open while the client reads; with the last order
    /// the page covers (`None` past the end).
    async fn initial_page(
        &self,
        initial: &InitialState,
        after_order: i64,
    ) -> Result<(Option<i64>, Vec<OrganizationUsage>)> {
        let p = initial.period.to_string();
        let txn = self.db.begin_snapshot().await?;
        let rows = repo::billable_page(
            &txn,
            &p,
            after_order,
            initial.through_order,
            WATCH_INITIAL_PAGE,
        )
        .await?;
        let last_order = rows.last().and_then(|row| row.billable_order);
        let rows = rows
            .into_iter()
            .filter(|row| {
                row.billable_order
                    .is_none_or(|order| !initial.pending.contains(&order))
            })
            .collect();
        let usages = with_members(&txn, &p, rows).await?;
        txn.commit().await?;
        Ok((last_order, usages))
    }

    /// The totals of the current period, including at least every event up
    /// to `seq`, for watch messages: computed once for all the watches of the
    /// process that wake together.
    async fn summary(&self, seq: i64) -> Result<BillingSummary> {
        let now = self.clock.now_micros();
        let period = BillingPeriod::containing_micros(now);
        let mut shared = self.shared.summary.lock().await;
        if let Some(cached) = shared.as_ref()
            && cached.seq >= seq
            && cached.summary.period == period.to_string()
            && cached.computed.elapsed() < WATCH_SUMMARY_MAX_AGE
        {
            return Ok(cached.summary.clone());
        }
        // Every event up to the notifier's position was committed before
        // it got there, so the snapshot begun after reading it sees them.
        let head = self.notifier.position();
        let txn = self.db.begin_snapshot().await?;
        let summary = summary_in(&txn, &self.pricing, period, now).await?;
        txn.commit().await?;
        *shared = Some(SharedSummary {
            seq: head,
            computed: tokio::time::Instant::now(),
            summary: summary.clone(),
        });
        Ok(summary)
    }
}

/// One open watch: its position in the log and where its messages go.
struct WatchTask {
    watch: BillingWatch,
    sender: mpsc::Sender<Result<WatchMessage>>,
    wake: watch::Receiver<i64>,
    shutdown: watch::Receiver<bool>,
    /// The sequence number of the last event considered.
    after: i64,
}

/// Why a watch stopped waiting.
enum Woken {
    /// The log may have grown (or the shutdown flag changed: checked next).
    Log,
    /// The server is gone.
    Shutdown,
    /// The client went away.
    Closed,
    /// Nothing was sent for a checkpoint interval.
    Idle,
}

/// Why a stream (a billing watch, or an event stream) stopped sending.
pub(crate) enum Stop {
    /// The client went away.
    Closed,
    Failed(Error),
}

impl From<Error> for Stop {
    fn from(err: Error) -> Self {
        Stop::Failed(err)
    }
}

impl From<sea_orm::DbErr> for Stop {
    fn from(err: sea_orm::DbErr) -> Self {
        Stop::Failed(err.into())
    }
}

impl WatchTask {
    async fn run(mut self, initial: Option<InitialState>) {
        let result = self.stream(initial).await;
        if let Err(Stop::Failed(err)) = result {
            if !matches!(err, Error::Unavailable(Reason::ShuttingDown, _)) {
                tracing::warn!(error = %err, "billing watch ended");
            }
            // The client may be gone or slow; do not wait for it forever.
            let _ = tokio::time::timeout(Duration::from_secs(5), self.sender.send(Err(err))).await;
        }
    }

    async fn stream(&mut self, initial: Option<InitialState>) -> Result<(), Stop> {
        let checkpoint_interval = self.watch.settings.checkpoint_interval;
        if let Some(initial) = initial {
            self.send_initial_state(initial).await?;
        }
        let mut last_sent = tokio::time::Instant::now();
        loop {
            if *self.shutdown.borrow() {
                return Err(Stop::Failed(shutting_down()));
            }
            if self.catch_up().await? {
                last_sent = tokio::time::Instant::now();
            }
            let woken = tokio::select! {
                changed = self.wake.changed() => if changed.is_ok() { Woken::Log } else { Woken::Shutdown },
                changed = self.shutdown.changed() => if changed.is_ok() { Woken::Log } else { Woken::Shutdown },
                _ = self.sender.closed() => Woken::Closed,
                _ = tokio::time::sleep_until(last_sent + checkpoint_interval) => Woken::Idle,
            };
            match woken {
                Woken::Log => {}
                Woken::Shutdown => return Err(Stop::Failed(shutting_down())),
                Woken::Closed => return Err(Stop::Closed),
                Woken::Idle => {
                    self.checkpoint().await?;
                    last_sent = tokio::time::Instant::now();
                }
            }
        }
    }

    /// Sends every billing event committed after `after`, up to the highest
    /// sequence number known committed (by this process, or by another
    /// replica as the log follower saw); returns whether it sent any.
    async fn catch_up(&mut self) -> Result<bool, Stop> {
        let mut sent = false;
        loop {
            let head = *self.wake.borrow_and_update();
            if head <= self.after {
                return Ok(sent);
            }
            let conn = self.watch.db.conn();
            let shared = &self.watch.shared;
            let (events, reached) = shared
                .tail
                .read(conn, &shared.filter, self.after, head, WATCH_READ_LIMIT)
                .await?;
            if let Some(last) = events.last() {
                let summary = self.watch.summary(last.seq).await?;
                for event in events {
                    let seq = event.seq;
                    let message = to_watch_event(event)?;
                    self.after = seq;
                    self.send(WatchMessage {
                        cursor: self.cursor(),
                        event: message,
                        summary: summary.clone(),
                    })
                    .await?;
                    sent = true;
                }
            }
            self.after = self.after.max(reached);
        }
    }

    /// Sends the initial state a page at a time, every message with the
    /// starting position as its cursor, then a checkpoint.
    async fn send_initial_state(&mut self, initial: InitialState) -> Result<(), Stop> {
        let summary = self.watch.summary(self.after).await?;
        let cursor = self.cursor();
        let mut after_order = 0;
        while after_order < initial.through_order {
            let (last_order, page) = self.watch.initial_page(&initial, after_order).await?;
            let Some(last_order) = last_order else {
                break;
            };
            after_order = last_order;
            for usage in page {
                self.send(WatchMessage {
                    cursor: cursor.clone(),
                    event: WatchEvent::BecameBillable(usage),
                    summary: summary.clone(),
                })
                .await?;
            }
        }
        self.checkpoint().await
    }

    async fn checkpoint(&mut self) -> Result<(), Stop> {
        let summary = self.watch.summary(self.after).await?;
        let now = self.watch.clock.now_micros();
        self.send(WatchMessage {
            cursor: self.cursor(),
            event: WatchEvent::Checkpoint(now),
            summary,
        })
        .await
    }

    fn cursor(&self) -> String {
        WatchCursor { seq: self.after }.encode(&self.watch.tokens)
    }

    /// Sends one message, waiting while the client's buffer is full, but not
    /// past shutdown.
    async fn send(&mut self, message: WatchMessage) -> Result<(), Stop> {
        tokio::select! {
            sent = self.sender.send(Ok(message)) => sent.map_err(|_| Stop::Closed),
            _ = wait_for_shutdown(&mut self.shutdown) => Err(Stop::Failed(shutting_down())),
        }
    }
}

async fn wait_for_shutdown(shutdown: &mut watch::Receiver<bool>) {
    if shutdown.wait_for(|down| *down).await.is_err() {
        // The sender is gone: the server has stopped.
    }
}

fn to_watch_event(event: EventRow) -> Result<WatchEvent> {
    match EventKind::parse(&event.kind) {
        Some(EventKind::BillingOrganizationBecameBillable) => {
            let payload: BecameBillable =
                serde_json::from_str(&event.payload).map_err(Error::internal)?;
            Ok(WatchEvent::BecameBillable(payload.usage.bounded()))
        }
        Some(EventKind::BillingPeriodStarted) => {
            let payload: PeriodStarted =
                serde_json::from_str(&event.payload).map_err(Error::internal)?;
            Ok(WatchEvent::PeriodStarted(payload.period))
        }
        Some(EventKind::BillingBudgetThresholdCrossed) => {
            let payload: BudgetThresholdCrossed =
                serde_json::from_str(&event.payload).map_err(Error::internal)?;
            Ok(WatchEvent::BudgetThresholdCrossed(payload))
        }
        _ => Err(Error::internal(format!(
            "unexpected event {} in the billing watch",
            event.kind
        ))),
    }
}
