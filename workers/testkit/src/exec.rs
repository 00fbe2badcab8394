//! Running the core's futures in a test: [`block_on`] for one, [`join_all`] for several at
//! once, polled in turns so that they interleave at every suspension point (each SQL round
//! trip of [`crate::sqlite::SqliteSql`]), as concurrent requests do on a real host.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

pub use pollster::block_on;

/// Runs `futures` concurrently on the current thread and returns their outputs in order.
pub fn join_all<F: Future>(futures: Vec<F>) -> Vec<F::Output> {
    block_on(JoinAll {
        futures: futures.into_iter().map(|f| Some(Box::pin(f))).collect(),
        outputs: Vec::new(),
    })
}

struct JoinAll<F: Future> {
    futures: Vec<Option<Pin<Box<F>>>>,
    outputs: Vec<Option<F::Output>>,
}

impl<F: Future> Future for JoinAll<F> {
    type Output = Vec<F::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if this.outputs.is_empty() {
            this.outputs = this.futures.iter().map(|_| None).collect();
        }
        for (slot, output) in this.futures.iter_mut().zip(this.outputs.iter_mut()) {
            if let Some(future) = slot {
                if let Poll::Ready(value) = future.as_mut().poll(cx) {
                    *output = Some(value);
                    *slot = None;
                }
            }
        }
        if this.futures.iter().all(Option::is_none) {
            Poll::Ready(this.outputs.iter_mut().filter_map(Option::take).collect())
        } else {
            Poll::Pending
        }
    }
}

// The futures are boxed and the outputs are only moved out when done: nothing relies on
// `JoinAll` itself staying in place.
impl<F: Future> Unpin for JoinAll<F> {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    /// Pending `n` times, logging each turn.
    async fn steps(name: char, n: usize, log: &RefCell<String>) -> char {
        for _ in 0..n {
            log.borrow_mut().push(name);
            let mut yielded = false;
            std::future::poll_fn(|cx| {
                if yielded {
                    Poll::Ready(())
                } else {
                    yielded = true;
                    cx.waker().wake_by_ref();
                    Poll::Pending
                }
            })
            .await;
        }
        name
    }

    #[test]
    fn futures_take_turns_and_keep_their_order() {
        let log = RefCell::new(String::new());
        let outputs = join_all(vec![steps('a', 2, &log), steps('b', 3, &log)]);
        assert_eq!(outputs, vec!['a', 'b']);
        assert_eq!(log.into_inner(), "ababb");
    }
}
