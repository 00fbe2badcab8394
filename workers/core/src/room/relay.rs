//! A channel room's relays: one per place (on Cloudflare a Durable Object per data center,
//! and one per continent behind those), through which that place's isolates read the room's
//! live window and wait for its parts. Each isolate already makes one call per playlist it
//! misses ([`crate::services::edge_cache`]); a big channel is served by many isolates in
//! each data center, so without relays the room takes one call per isolate per miss (~2,000/s
//! at a million viewers, over a Durable Object's ~1,000/s). A relay shares one call among the
//! askers of the same thing at once or within [`REUSE_MS`] of an answer; a data center's
//! relay asks its continent's, which asks the room, so the room's calls grow with continents,
//! not isolates or data centers (`docs/SCALE.md`).
//!
//! Only reads whose answer is the same for every asker are relayed ([`relay_key`]): a
//! rendition's window (with its blocking-reload target) and a part's arrival. An answer is
//! reused until [`REUSE_MS`] after the room gave it, not after each tier got it: a relay
//! hands its callers the time its answer stops being reused, and a relay behind it keeps the
//! answer no longer than that, so two tiers do not make a window twice as old. A channel
//! that has never been live is not reused at all (its first playlist must show at once).
//! The relay keeps nothing durable: its table lives in memory and a relay that restarts
//! starts empty.

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;

use futures_channel::oneshot;

use crate::error::StoreError;
use crate::model::room::{RoomRequest, RoomResponse};

/// How long a relayed answer is handed to later askers, in ms. A live playlist is fresh in
/// an isolate for up to a second ([`crate::api`]'s live playlist), so a viewer's playlist is
/// at most 1.5 s old, within a 2 s segment; a blocking reload for a part is asked by a
/// location's isolates within a few ms of each other.
pub const REUSE_MS: u64 = 500;

/// The longest location name kept in a relay's name (Cloudflare's are three letters).
const MAX_LOCATION: usize = 16;

/// The name of the relay of `room` in `location` (a data center's three-letter code or a
/// continent's two; letters and digits only, `None` when none are left).
pub fn relay_room(room: &str, location: &str) -> Option<String> {
    let location: String = location
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(MAX_LOCATION)
        .collect();
    (!location.is_empty()).then(|| format!("{room}/relay/{location}"))
}

/// Whether relays pass `request` on (and share its answer): a window, or a viewer's wait
/// for a part's bytes; writes, presence, status and the pusher's own reads (a part's bytes
/// asked with no hold, to commit it) go to the room itself.
pub fn relayed(request: &RoomRequest) -> bool {
    match request {
        RoomRequest::Window { .. } => true,
        RoomRequest::PartBytes { until_ms, .. } => *until_ms > 0,
        _ => false,
    }
}

/// What askers of `request` to `room` share one answer under, when they may ([`relayed`]): a
/// window by rendition, size and blocking-reload target, or a part's bytes from one offset
/// (bytes once sent never change, so every viewer at that offset may share them).
pub fn relay_key(room: &str, request: &RoomRequest) -> Option<String> {
    match request {
        RoomRequest::Window {
            max_segments,
            rendition,
            block,
            ..
        } => Some(format!(
            "{room} window {} {max_segments} {}",
            rendition.as_deref().unwrap_or("-"),
            block.as_ref().map_or("-".to_owned(), |b| format!(
                "{}.{}",
                b.msn,
                b.part.map_or("-".to_owned(), |p| p.to_string())
            )),
        )),
        RoomRequest::PartBytes {
            broadcast_id,
            file,
            from,
            ..
        } => Some(format!("{room} part {broadcast_id} {file} {from}")),
        _ => None,
    }
}

/// An answer and until when it is reused (Unix ms; no later than the room's answer plus
/// [`REUSE_MS`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Relayed {
    /// The room's answer.
    pub answer: RoomResponse,
    /// Until when relays hand it out again.
    pub until_ms: u64,
    /// Whether this call asked the next tier (the room or the next relay) for it.
    pub asked: bool,
}

/// What a waiter is handed: the answer and until when it is reused, or the error's text.
type Handed = Result<(RoomResponse, u64), String>;

/// What the relay knows of one key.
enum Entry {
    /// An asker is asking the room; these wait for its answer.
    Asking(Vec<oneshot::Sender<Handed>>),
    /// The last answer, handed out until this time (Unix ms).
    Answered { answer: RoomResponse, until_ms: u64 },
}

/// Whether an answer may be handed to later askers: not "never live" (a channel going live
/// shows at once).
fn reusable(answer: &RoomResponse) -> bool {
    !matches!(answer, RoomResponse::Window { window: None })
}

/// One relay's table of the answers being asked for and just given. Single-threaded (one
/// Durable Object); askers wait on one-shot channels, woken by the asker that called the
/// room.
#[derive(Default)]
pub struct Relay {
    entries: RefCell<HashMap<String, Entry>>,
}

/// Removes an entry still being asked for if its asker goes away (the request was
/// cancelled), so the waiters ask for themselves instead of waiting forever.
struct Asking<'a> {
    relay: &'a Relay,
    key: &'a str,
    done: bool,
}

impl Drop for Asking<'_> {
    fn drop(&mut self) {
        if !self.done {
            // Dropping the senders wakes the waiters with `Canceled`.
            self.relay.entries.borrow_mut().remove(self.key);
        }
    }
}

impl Relay {
    /// A relay with nothing asked yet.
    pub fn new() -> Self {
        Relay::default()
    }

    /// The answer for `key` at `now_ms`: one still reused, the one another asker is
    /// getting, or else `ask()`'s (the next tier's answer, with the time its reuse ends when
    /// that tier is a relay), shared with whoever asks for `key` meanwhile.
    ///
    /// # Errors
    /// `ask`'s error (also handed to those who waited for it), or `Backend` when the asker
    /// they waited for went away and their own `ask` fails.
    pub async fn answer<F, Fut>(
        &self,
        key: &str,
        now_ms: u64,
        ask: F,
    ) -> Result<Relayed, StoreError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<(RoomResponse, Option<u64>), StoreError>>,
    {
        let asked = |(answer, upstream_until): (RoomResponse, Option<u64>)| {
            let until_ms = if reusable(&answer) {
                (now_ms + REUSE_MS).min(upstream_until.unwrap_or(u64::MAX))
            } else {
                now_ms
            };
            Relayed {
                answer,
                until_ms,
                asked: true,
            }
        };
        let waiting = {
            let mut entries = self.entries.borrow_mut();
            entries.retain(|_, entry| match entry {
                Entry::Answered { until_ms, .. } => *until_ms > now_ms,
                Entry::Asking(_) => true,
            });
            match entries.get_mut(key) {
                Some(Entry::Answered { answer, until_ms }) => {
                    return Ok(Relayed {
                        answer: answer.clone(),
                        until_ms: *until_ms,
                        asked: false,
                    })
                }
                Some(Entry::Asking(waiters)) => {
                    let (tx, rx) = oneshot::channel();
                    waiters.push(tx);
                    Some(rx)
                }
                None => {
                    entries.insert(key.to_owned(), Entry::Asking(Vec::new()));
                    None
                }
            }
        };
        if let Some(rx) = waiting {
            return match rx.await {
                Ok(Ok((answer, until_ms))) => Ok(Relayed {
                    answer,
                    until_ms,
                    asked: false,
                }),
                Ok(Err(message)) => Err(StoreError::backend("relay", message)),
                // The asker went away: ask for ourselves.
                Err(oneshot::Canceled) => ask().await.map(asked),
            };
        }
        let mut guard = Asking {
            relay: self,
            key,
            done: false,
        };
        let result = ask().await.map(asked);
        guard.done = true;
        let waiters = {
            let mut entries = self.entries.borrow_mut();
            let waiters = match entries.remove(key) {
                Some(Entry::Asking(waiters)) => waiters,
                _ => Vec::new(),
            };
            if let Some(relayed) = result.as_ref().ok().filter(|r| r.until_ms > now_ms) {
                entries.insert(
                    key.to_owned(),
                    Entry::Answered {
                        answer: relayed.answer.clone(),
                        until_ms: relayed.until_ms,
                    },
                );
            }
            waiters
        };
        let handed: Handed = match &result {
            Ok(relayed) => Ok((relayed.answer.clone(), relayed.until_ms)),
            Err(e) => Err(e.to_string()),
        };
        for waiter in waiters {
            let _ = waiter.send(handed.clone());
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use futures_util::future::join_all;
    use futures_util::FutureExt as _;

    use super::*;
    use crate::model::room::Block;

    fn window(part: Option<u64>) -> RoomRequest {
        RoomRequest::Window {
            max_segments: 6,
            rendition: Some("v720".into()),
            now_ms: 1,
            block: part.map(|part| Block {
                msn: 4,
                part: Some(part),
                until_ms: 9,
            }),
        }
    }

    #[test]
    fn only_shared_reads_are_relayed_and_their_keys_name_what_is_asked() {
        let key = |request: &RoomRequest| relay_key("ch_1", request);
        assert_eq!(key(&window(None)).unwrap(), "ch_1 window v720 6 -");
        assert_eq!(key(&window(Some(2))).unwrap(), "ch_1 window v720 6 4.2");
        assert_ne!(key(&window(Some(2))), relay_key("ch_2", &window(Some(2))));
        // The askers' own clocks are not part of what they ask.
        let later = match window(Some(2)) {
            RoomRequest::Window {
                max_segments,
                rendition,
                block,
                ..
            } => RoomRequest::Window {
                max_segments,
                rendition,
                now_ms: 500,
                block: block.map(|b| Block {
                    until_ms: 4_500,
                    ..b
                }),
            },
            other => other,
        };
        assert_eq!(key(&later), key(&window(Some(2))));
        let part = RoomRequest::PartBytes {
            broadcast_id: "br_1".into(),
            file: "v720/seg4.1.m4s".into(),
            from: 4096,
            until_ms: 9,
        };
        assert_eq!(key(&part).unwrap(), "ch_1 part br_1 v720/seg4.1.m4s 4096");
        assert_eq!(key(&RoomRequest::Ping), None);
        assert_eq!(key(&RoomRequest::Status { now_ms: 1 }), None);
        for request in [
            window(None),
            window(Some(2)),
            part.clone(),
            RoomRequest::Ping,
        ] {
            assert_eq!(relayed(&request), key(&request).is_some(), "{request:?}");
        }
        // The pusher's read of its part's bytes (no hold) goes to the room itself.
        assert!(!relayed(&part.without_hold()));
    }

    #[test]
    fn relay_names_keep_letters_and_digits_of_the_location() {
        assert_eq!(relay_room("ch_1", "AMS").unwrap(), "ch_1/relay/AMS");
        assert_eq!(relay_room("ch_1", "a/../b c").unwrap(), "ch_1/relay/abc");
        assert_eq!(relay_room("ch_1", "//"), None);
        assert_eq!(
            relay_room("ch_1", &"x".repeat(100)).unwrap().len(),
            "ch_1/relay/".len() + MAX_LOCATION
        );
    }

    /// A room call that answers once `gate` opens (the first call takes the gate; later
    /// ones answer at once), counting the calls.
    async fn room_call(
        calls: &Cell<u32>,
        gate: &RefCell<Option<oneshot::Receiver<()>>>,
        answer: Result<RoomResponse, StoreError>,
    ) -> Result<(RoomResponse, Option<u64>), StoreError> {
        calls.set(calls.get() + 1);
        let waiting = gate.borrow_mut().take();
        if let Some(waiting) = waiting {
            let _ = waiting.await;
        }
        answer.map(|answer| (answer, None))
    }

    /// `relay`'s answer for `key` at `now_ms`, counting a call in `calls` when it asks
    /// (the next tier answering `answer`, reused until `upstream_until`).
    fn answer_at(
        relay: &Relay,
        calls: &Cell<u32>,
        key: &str,
        now_ms: u64,
        answer: RoomResponse,
        upstream_until: Option<u64>,
    ) -> Relayed {
        pollster::block_on(relay.answer(key, now_ms, || async {
            calls.set(calls.get() + 1);
            Ok((answer, upstream_until))
        }))
        .unwrap()
    }

    /// Starts `n` askers of key `k` at `now_ms` (each polled once, so all are under way
    /// before the room answers), then lets the room answer and returns their results.
    fn ask_together(
        relay: &Relay,
        calls: &Cell<u32>,
        n: usize,
        answer: &Result<RoomResponse, StoreError>,
    ) -> Vec<Result<Relayed, StoreError>> {
        let (open, gate) = oneshot::channel::<()>();
        let gate = RefCell::new(Some(gate));
        let mut askers: Vec<_> = (0..n)
            .map(|_| {
                let answer = answer.clone();
                Box::pin(relay.answer("k", 1_000, || room_call(calls, &gate, answer)))
            })
            .collect();
        for asker in &mut askers {
            assert!(asker.as_mut().now_or_never().is_none(), "under way");
        }
        let _ = open.send(());
        pollster::block_on(join_all(askers))
    }

    #[test]
    fn concurrent_askers_share_one_room_call_and_its_answer_is_reused_briefly() {
        let relay = Relay::new();
        let calls = Cell::new(0);
        let answers = ask_together(&relay, &calls, 100, &Ok(RoomResponse::Pending));
        assert_eq!(calls.get(), 1, "one room call for a hundred askers");
        assert!(answers.iter().all(|a| a
            .as_ref()
            .is_ok_and(|r| r.answer == RoomResponse::Pending && r.until_ms == 1_000 + REUSE_MS)));
        let asked = answers.iter().filter(|a| a.as_ref().is_ok_and(|r| r.asked));
        assert_eq!(asked.count(), 1);
        // Reused within REUSE_MS, asked again after.
        let at = |key: &str, now_ms| {
            answer_at(&relay, &calls, key, now_ms, RoomResponse::Pending, None).asked
        };
        assert!(!at("k", 1_000 + REUSE_MS - 1));
        assert_eq!(calls.get(), 1);
        assert!(at("k", 1_000 + REUSE_MS));
        assert_eq!(calls.get(), 2);
        // Another key is its own call.
        assert!(at("other", 1_000));
        assert_eq!(calls.get(), 3);
    }

    #[test]
    fn a_relay_behind_another_reuses_no_longer_than_the_one_it_asked() {
        let relay = Relay::new();
        let calls = Cell::new(0);
        // The next tier's answer is reused until 1,100: so here too, not until 1,500.
        let first = answer_at(&relay, &calls, "k", 1_000, RoomResponse::Done, Some(1_100));
        assert_eq!((first.until_ms, first.asked), (1_100, true));
        assert!(!answer_at(&relay, &calls, "k", 1_099, RoomResponse::Done, None).asked);
        assert!(answer_at(&relay, &calls, "k", 1_100, RoomResponse::Done, None).asked);
        assert_eq!(calls.get(), 2);
    }

    #[test]
    fn a_channel_never_live_is_asked_each_time() {
        let relay = Relay::new();
        let calls = Cell::new(0);
        let never = RoomResponse::Window { window: None };
        let first = answer_at(&relay, &calls, "k", 1_000, never.clone(), None);
        assert_eq!((first.until_ms, first.asked), (1_000, true));
        assert!(answer_at(&relay, &calls, "k", 1_001, never, None).asked);
        assert_eq!(calls.get(), 2);
    }

    #[test]
    fn a_failed_call_reaches_its_waiters_and_is_not_reused() {
        let relay = Relay::new();
        let calls = Cell::new(0);
        let failed = Err(StoreError::backend("durable_object", "overloaded"));
        let answers = ask_together(&relay, &calls, 3, &failed);
        assert_eq!(calls.get(), 1);
        assert!(answers.iter().all(|a| a
            .as_ref()
            .is_err_and(|e| e.to_string().contains("overloaded"))));
        let again = answer_at(&relay, &calls, "k", 1_001, RoomResponse::Pending, None);
        assert!(again.asked, "a failure is not handed to later askers");
    }

    #[test]
    fn waiters_ask_for_themselves_when_the_asker_goes_away() {
        let relay = Relay::new();
        let calls = Cell::new(0);
        let (_never, gate) = oneshot::channel::<()>();
        let gate = RefCell::new(Some(gate));
        let mut first = Box::pin(relay.answer("k", 1_000, || {
            room_call(&calls, &gate, Ok(RoomResponse::Pending))
        }));
        let mut second = Box::pin(relay.answer("k", 1_000, || async {
            calls.set(calls.get() + 1);
            Ok((RoomResponse::Pending, None))
        }));
        assert!(first.as_mut().now_or_never().is_none(), "asking the room");
        assert!(
            second.as_mut().now_or_never().is_none(),
            "waits for the first"
        );
        assert_eq!(calls.get(), 1);
        drop(first);
        let answer = second.as_mut().now_or_never().expect("asks for itself");
        assert!(answer.unwrap().asked);
        assert_eq!(calls.get(), 2);
    }
}
