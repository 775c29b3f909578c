//! Point reads from concurrent calls, gathered into one statement.
//!
//! A call is sent at once while fewer than `slots` statements of its kind are running;
//! otherwise it waits for the next one to finish, and goes with every call that arrived
//! meanwhile (up to `max_batch`) in one statement. An idle server answers each read as
//! it comes; under load each round trip and each statement's fixed cost in the database
//! is shared by a batch of reads. Every call still sees what was committed before it
//! was made, since its statement starts after it.
//!
//! Statements run in tasks of their own, so a caller that goes away (its client hung up)
//! cancels nothing that other callers wait for; a waiting call whose caller is gone is
//! left out of the next statement. A statement that fails or panics fails the reads it
//! carried, and the next statement runs as usual.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use futures_util::FutureExt;
use tokio::sync::oneshot;

use super::{StoreError, StoreResult};

/// A statement's answers, one per read in the order given.
pub type Answers<R> = Pin<Box<dyn Future<Output = StoreResult<Vec<R>>> + Send>>;

/// Runs one statement for a batch of reads.
pub type Run<Q, R> = Box<dyn Fn(Vec<Q>) -> Answers<R> + Send + Sync>;

/// Reads of one kind (`Q` asked, `R` answered), gathered as described above.
pub struct Coalescer<Q, R> {
    inner: Arc<Inner<Q, R>>,
}

struct Inner<Q, R> {
    queue: Mutex<Queue<Q, R>>,
    run: Run<Q, R>,
    slots: usize,
    max_batch: usize,
}

struct Queue<Q, R> {
    waiting: Vec<(Q, oneshot::Sender<StoreResult<R>>)>,
    /// Tasks running statements; at most `slots`.
    running: usize,
}

impl<Q: Send + 'static, R: Send + 'static> Coalescer<Q, R> {
    /// At most `slots` statements at a time, each of at most `max_batch` reads, run by
    /// `run`.
    pub fn new(slots: usize, max_batch: usize, run: Run<Q, R>) -> Self {
        let queue = Mutex::new(Queue { waiting: Vec::new(), running: 0 });
        Coalescer { inner: Arc::new(Inner { queue, run, slots: slots.max(1), max_batch: max_batch.max(1) }) }
    }

    /// The answer to `read`, from the statement it goes with.
    pub async fn read(&self, read: Q) -> StoreResult<R> {
        let (reply, answer) = oneshot::channel();
        let start = {
            let mut queue = self.inner.lock();
            queue.waiting.push((read, reply));
            queue.running < self.inner.slots && {
                queue.running += 1;
                true
            }
        };
        if start {
            tokio::spawn(Slot(Some(self.inner.clone())).drain());
        }
        answer.await.unwrap_or_else(|_| Err(StoreError::Other("a batched read stopped unanswered".into())))
    }
}

impl<Q: Send + 'static, R: Send + 'static> Inner<Q, R> {
    fn lock(&self) -> MutexGuard<'_, Queue<Q, R>> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The next batch of reads whose callers still wait; `None` (and the slot given back,
    /// under the same lock, so no read is left waiting without a task) when there are none.
    fn next_batch(&self) -> Option<Vec<(Q, oneshot::Sender<StoreResult<R>>)>> {
        let mut queue = self.lock();
        queue.waiting.retain(|(_, reply)| !reply.is_closed());
        if queue.waiting.is_empty() {
            queue.running -= 1;
            return None;
        }
        let n = queue.waiting.len().min(self.max_batch);
        Some(queue.waiting.drain(..n).collect())
    }
}

/// One of the `slots`, held by the task running statements. A statement that panics
/// fails its own reads only; a task stopped before it could give its slot back (the
/// runtime is stopping) gives it back when dropped.
struct Slot<Q: Send + 'static, R: Send + 'static>(Option<Arc<Inner<Q, R>>>);

impl<Q: Send + 'static, R: Send + 'static> Slot<Q, R> {
    async fn drain(mut self) {
        let inner = self.0.clone().expect("a slot is held until it is given back");
        while let Some(batch) = inner.next_batch() {
            let (reads, replies): (Vec<Q>, Vec<_>) = batch.into_iter().unzip();
            let answered = AssertUnwindSafe((inner.run)(reads)).catch_unwind().await;
            match answered {
                Ok(Ok(answers)) if answers.len() == replies.len() => {
                    for (reply, answer) in replies.into_iter().zip(answers) {
                        let _ = reply.send(Ok(answer));
                    }
                }
                Ok(Err(e)) => replies.into_iter().for_each(|reply| {
                    let _ = reply.send(Err(e.clone()));
                }),
                Ok(Ok(_)) | Err(_) => replies.into_iter().for_each(|reply| {
                    let _ = reply.send(Err(StoreError::Other("a batched read failed".into())));
                }),
            }
        }
        // `next_batch` gave the slot back.
        self.0 = None;
    }
}

impl<Q: Send + 'static, R: Send + 'static> Drop for Slot<Q, R> {
    fn drop(&mut self) {
        if let Some(inner) = self.0.take() {
            inner.lock().running -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    /// Answers each read with itself doubled, after `delay`, counting statements and the
    /// largest batch.
    fn doubling(delay: Duration, statements: Arc<AtomicUsize>, largest: Arc<AtomicUsize>) -> Run<u32, u32> {
        Box::new(move |reads: Vec<u32>| {
            statements.fetch_add(1, Ordering::SeqCst);
            largest.fetch_max(reads.len(), Ordering::SeqCst);
            Box::pin(async move {
                tokio::time::sleep(delay).await;
                Ok(reads.into_iter().map(|r| r * 2).collect())
            })
        })
    }

    #[tokio::test]
    async fn a_lone_read_goes_at_once_and_concurrent_ones_share_statements() {
        let (statements, largest) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let c =
            Arc::new(Coalescer::new(2, 8, doubling(Duration::from_millis(20), statements.clone(), largest.clone())));
        assert_eq!(c.read(21).await.unwrap(), 42);
        assert_eq!(statements.load(Ordering::SeqCst), 1);

        let calls: Vec<_> = (0..40u32)
            .map(|i| {
                let c = c.clone();
                tokio::spawn(async move { (i, c.read(i).await.unwrap()) })
            })
            .collect();
        for call in calls {
            let (i, answer) = call.await.unwrap();
            assert_eq!(answer, i * 2);
        }
        let statements = statements.load(Ordering::SeqCst) - 1;
        assert!(statements < 40, "{statements} statements for 40 concurrent reads");
        assert!(statements >= 5, "at most 8 reads a statement: {statements} statements");
        assert!(largest.load(Ordering::SeqCst) <= 8);
    }

    #[tokio::test]
    async fn an_error_reaches_every_read_of_its_statement_and_the_next_ones_run() {
        let fail = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let f = fail.clone();
        let c = Arc::new(Coalescer::new(
            1,
            16,
            Box::new(move |reads: Vec<u32>| {
                let fail = f.load(Ordering::SeqCst);
                Box::pin(async move {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    if fail {
                        Err(StoreError::Unavailable("down".into()))
                    } else {
                        Ok(reads)
                    }
                }) as Answers<u32>
            }),
        ));
        let calls: Vec<_> = (0..5u32)
            .map(|i| {
                tokio::spawn({
                    let c = c.clone();
                    async move { c.read(i).await }
                })
            })
            .collect();
        for call in calls {
            assert!(matches!(call.await.unwrap(), Err(StoreError::Unavailable(_))));
        }
        fail.store(false, Ordering::SeqCst);
        assert_eq!(c.read(7).await.unwrap(), 7);
    }

    #[tokio::test]
    async fn a_statement_that_panics_fails_its_reads_and_the_next_one_runs() {
        let calls = Arc::new(AtomicUsize::new(0));
        let n = calls.clone();
        let c = Arc::new(Coalescer::new(
            1,
            16,
            Box::new(move |reads: Vec<u32>| {
                let first = n.fetch_add(1, Ordering::SeqCst) == 0;
                Box::pin(async move {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    assert!(!first, "the first statement fails");
                    Ok(reads)
                }) as Answers<u32>
            }),
        ));
        let first = tokio::spawn({
            let c = c.clone();
            async move { c.read(1).await }
        });
        tokio::time::sleep(Duration::from_millis(5)).await;
        // These wait behind the statement that panics, and go in the next.
        let waiting: Vec<_> = (2..5u32)
            .map(|i| {
                let c = c.clone();
                tokio::spawn(async move { c.read(i).await })
            })
            .collect();
        assert!(first.await.unwrap().is_err());
        for (i, read) in (2..5u32).zip(waiting) {
            assert_eq!(read.await.unwrap().unwrap(), i);
        }
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_read_whose_caller_left_is_not_sent() {
        let (statements, largest) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let c =
            Arc::new(Coalescer::new(1, 8, doubling(Duration::from_millis(50), statements.clone(), largest.clone())));
        let first = tokio::spawn({
            let c = c.clone();
            async move { c.read(1).await }
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        // Waits behind the first statement, then its caller gives up.
        let gone = tokio::time::timeout(Duration::from_millis(10), c.read(2)).await;
        assert!(gone.is_err());
        assert_eq!(first.await.unwrap().unwrap(), 2);
        assert_eq!(c.read(3).await.unwrap(), 6);
        assert_eq!(largest.load(Ordering::SeqCst), 1, "the abandoned read went with none");
        assert_eq!(statements.load(Ordering::SeqCst), 2);
    }
}
