//! `orgs.v1.EventService`: every change of every service, read from the log.
//! A watch is resumable from any replica (its cursor is a position in the
//! log, authenticated with the key every replica shares) and reads through
//! the tail the process shares with every other watch, so a thousand watches
//! waking for one commit read the database about once.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use super::billing::WatchSettings;
use super::billing::watch::{Stop, check_age, shutting_down};
use super::list::Listing;
use crate::domain::billing::{EVENTS_CURSOR_QUERY, WatchCursor};
use crate::domain::events::{Event, EventFilter};
use crate::domain::paging::{Page, PageTokens};
use crate::domain::time::{Clock, Micros};
use crate::domain::{Error, Reason, Result};
use crate::events::{Notifier, WatchHub, reader, view};
use crate::store::Db;

/// Events read from the log at a time by one watch.
const WATCH_READ_LIMIT: usize = 256;
/// Messages buffered per watch: a slow client fills its own buffer and
/// slows only its own stream.
const WATCH_BUFFER: usize = 64;

/// What an event stream says.
#[derive(Debug, Clone)]
pub enum StreamItem {
    Event(Box<Event>),
    /// Nothing matched for a checkpoint interval; the server time.
    Checkpoint(Micros),
}

/// One message of an event stream, with the position to resume after it.
#[derive(Debug, Clone)]
pub struct StreamMessage {
    pub cursor: String,
    pub item: StreamItem,
}

/// An event with the cursor right after it.
#[derive(Debug, Clone)]
pub struct ListedEvent {
    pub cursor: String,
    pub event: Event,
}

/// Lists and watches the log.
#[derive(Debug, Clone)]
pub struct Events {
    db: Db,
    clock: Arc<dyn Clock>,
    settings: WatchSettings,
    notifier: Notifier,
    /// Becomes true when the server starts shutting down; streams end with
    /// UNAVAILABLE then.
    shutdown: watch::Receiver<bool>,
    tokens: PageTokens,
    tail: Arc<reader::SharedTail>,
}

impl Events {
    pub fn new(
        db: Db,
        clock: Arc<dyn Clock>,
        settings: WatchSettings,
        hub: WatchHub,
        tokens: PageTokens,
    ) -> Self {
        let WatchHub {
            notifier,
            shutdown,
            tail,
        } = hub;
        Events {
            db,
            clock,
            settings,
            notifier,
            shutdown,
            tokens,
            tail,
        }
    }

    /// Reads a cursor of this stream; empty means none.
    pub fn cursor(&self, field: &'static str, value: &str) -> Result<Option<WatchCursor>> {
        WatchCursor::decode_for(&self.tokens, EVENTS_CURSOR_QUERY, field, value)
    }

    fn encode(&self, seq: i64) -> String {
        WatchCursor { seq }.encode_for(&self.tokens, EVENTS_CURSOR_QUERY)
    }

    /// The events `filter` selects, oldest first.
    pub async fn list(
        &self,
        filter: EventFilter,
        page_size: u64,
        page_token: &str,
    ) -> Result<Page<ListedEvent>> {
        let kinds: Vec<&str> = filter.kinds.iter().map(|kind| kind.as_str()).collect();
        let listing = Listing::start(
            &self.tokens,
            "events",
            &[
                filter.organization_id.as_ref().map_or("", |id| id.as_str()),
                &kinds.join(","),
            ],
            1,
            page_size,
            page_token,
        )?;
        let conn = self.db.conn();
        // Up to the head, which covers every write acknowledged before this
        // call: a page never holds an event that a smaller one could still
        // commit before.
        let head = reader::head(conn).await?;
        let after = listing.after_number(0)?.unwrap_or(0);
        // A page token from before the log was pruned past it may skip events.
        if after > 0 && after < crate::events::pruning::pruned_through(conn).await? {
            return Err(super::billing::watch::cursor_expired());
        }
        let rows = reader::read_matching(conn, &filter, after, head, listing.limit()).await?;
        let mut events = Vec::with_capacity(rows.len());
        for row in rows {
            if let Some(event) = view::event(row)? {
                events.push(ListedEvent {
                    cursor: self.encode(event.seq),
                    event,
                });
            }
        }
        let total_size = reader::count_matching(conn, &filter).await?;
        Ok(listing.finish(events, total_size, |last| vec![last.event.seq.to_string()]))
    }

    /// Opens a watch of the events `filter` selects after `start` (none: from
    /// now). Checks the cursor before answering; then a task of its own reads
    /// the log and feeds a bounded channel, so a slow client holds back only
    /// itself.
    pub async fn open(
        &self,
        start: Option<WatchCursor>,
        filter: EventFilter,
    ) -> Result<mpsc::Receiver<Result<StreamMessage>>> {
        if *self.shutdown.borrow() {
            return Err(shutting_down());
        }
        // Subscribe before reading the head, so no commit after it is missed.
        // The head covers every write acknowledged before this call: the
        // live stream starts after it, and a cursor's age is judged by the
        // events it has not seen.
        let wake = self.notifier.subscribe();
        let head = reader::head(self.db.conn()).await?;
        let after = match start {
            Some(cursor) => {
                if cursor.seq > head {
                    return Err(Error::InvalidToken(
                        Reason::CursorInvalid,
                        "start_cursor",
                        "start_cursor is not a cursor of this stream".into(),
                    ));
                }
                let now = self.clock.now_micros();
                check_age(&self.db, cursor.seq, now, self.settings.retention).await?;
                // The replay starts at once, without waiting for the follower.
                self.notifier.committed(head);
                cursor.seq
            }
            None => head,
        };
        let (sender, receiver) = mpsc::channel(WATCH_BUFFER);
        let task = StreamTask {
            events: self.clone(),
            filter,
            sender,
            wake,
            shutdown: self.shutdown.clone(),
            after,
        };
        tokio::spawn(task.run());
        Ok(receiver)
    }
}

/// One open stream: its filter, its position in the log and where its
/// messages go.
struct StreamTask {
    events: Events,
    filter: EventFilter,
    sender: mpsc::Sender<Result<StreamMessage>>,
    wake: watch::Receiver<i64>,
    shutdown: watch::Receiver<bool>,
    /// Every event up to this sequence number has been considered.
    after: i64,
}

/// Why a stream stopped waiting.
enum Woken {
    Log,
    Shutdown,
    Closed,
    Idle,
}

impl StreamTask {
    async fn run(mut self) {
        if let Err(Stop::Failed(err)) = self.stream().await {
            if !matches!(err, Error::Unavailable(Reason::ShuttingDown, _)) {
                tracing::warn!(error = %err, "event stream ended");
            }
            // The client may be gone or slow; do not wait for it forever.
            let _ = tokio::time::timeout(Duration::from_secs(5), self.sender.send(Err(err))).await;
        }
    }

    async fn stream(&mut self) -> Result<(), Stop> {
        let checkpoint_interval = self.events.settings.checkpoint_interval;
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
                    let now = self.events.clock.now_micros();
                    self.send(StreamItem::Checkpoint(now)).await?;
                    last_sent = tokio::time::Instant::now();
                }
            }
        }
    }

    /// Sends every matching event committed after `after`, up to the highest
    /// sequence number known committed (by this process, or by another
    /// replica as the log follower saw); returns whether it sent any.
    async fn catch_up(&mut self) -> Result<bool, Stop> {
        let mut sent = false;
        loop {
            let head = *self.wake.borrow_and_update();
            if head <= self.after {
                return Ok(sent);
            }
            let conn = self.events.db.conn();
            let (rows, reached) = self
                .events
                .tail
                .read(conn, &self.filter, self.after, head, WATCH_READ_LIMIT)
                .await?;
            for row in rows {
                let seq = row.seq;
                if let Some(event) = view::event(row)? {
                    self.after = seq;
                    self.send(StreamItem::Event(Box::new(event))).await?;
                    sent = true;
                }
            }
            self.after = self.after.max(reached);
        }
    }

    /// Sends one message with the current position, waiting while the
    /// client's buffer is full, but not past shutdown.
    async fn send(&mut self, item: StreamItem) -> Result<(), Stop> {
        let message = StreamMessage {
            cursor: self.events.encode(self.after),
            item,
        };
        tokio::select! {
            sent = self.sender.send(Ok(message)) => sent.map_err(|_| Stop::Closed),
            _ = self.shutdown.wait_for(|down| *down) => Err(Stop::Failed(shutting_down())),
        }
    }
}
