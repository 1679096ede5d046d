//! Watch events and the in-process subscription to them.

use super::stored::Stored;
use crate::error::ApiError;
use std::collections::VecDeque;
use std::sync::Arc;
use tokio::sync::broadcast;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One change, in resourceVersion order. `prev` is the object before a
/// MODIFIED (selectors need it to turn a change into ADDED/DELETED).
#[derive(Debug)]
pub struct WatchEvent {
    pub type_: EventType,
    pub rv: u64,
    pub object: Arc<Stored>,
    pub prev: Option<Arc<Stored>>,
}

/// A fresh receiver and the kept events after a given rv.
pub(super) type Resubscription = (broadcast::Receiver<Arc<WatchEvent>>, VecDeque<Arc<WatchEvent>>);

/// How a stream that fell behind subscribes again after the last rv it
/// delivered (the store's `resubscribe` for the watched resource).
pub(super) type Resubscribe = Box<dyn Fn(u64) -> Result<Resubscription, ApiError> + Send + Sync>;

/// A subscription to one resource's changes: replays the kept history after
/// the start rv, then follows live events, without gaps or duplicates.
pub struct WatchStream {
    resubscribe: Resubscribe,
    rx: broadcast::Receiver<Arc<WatchEvent>>,
    backlog: VecDeque<Arc<WatchEvent>>,
    last_rv: u64,
}

impl WatchStream {
    pub(super) fn new(
        resubscribe: Resubscribe,
        rx: broadcast::Receiver<Arc<WatchEvent>>,
        backlog: VecDeque<Arc<WatchEvent>>,
        last_rv: u64,
    ) -> Self {
        WatchStream {
            resubscribe,
            rx,
            backlog,
            last_rv,
        }
    }

    /// The resourceVersion of the last event delivered (or the start).
    pub fn last_rv(&self) -> u64 {
        self.last_rv
    }

    /// The next event; `None` when the resource stops being served;
    /// `Err(410 Expired)` when this watcher fell behind the kept history.
    pub async fn next(&mut self) -> Option<Result<Arc<WatchEvent>, ApiError>> {
        loop {
            if let Some(ev) = self.backlog.pop_front() {
                if ev.rv > self.last_rv {
                    self.last_rv = ev.rv;
                    return Some(Ok(ev));
                }
                continue;
            }
            match self.rx.recv().await {
                Ok(ev) => {
                    if ev.rv > self.last_rv {
                        self.last_rv = ev.rv;
                        return Some(Ok(ev));
                    }
                }
                Err(broadcast::error::RecvError::Closed) => return None,
                Err(broadcast::error::RecvError::Lagged(_)) => match (self.resubscribe)(self.last_rv) {
                    Ok((rx, backlog)) => {
                        self.rx = rx;
                        self.backlog = backlog;
                    }
                    Err(e) => return Some(Err(e)),
                },
            }
        }
    }
}
