//! HTTP worker threads, one single-threaded runtime each (as haproxy runs its threads). A
//! client connection lives on one worker for its whole life, and so do the upstream
//! connections it borrows (the pool is sharded by worker), so a request never hops threads.

use std::cell::Cell;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use tokio::runtime::Handle;
use tokio::sync::oneshot;

use crate::error::ProxyError;

thread_local! {
    /// Index of the worker running on this thread; 0 elsewhere.
    static INDEX: Cell<usize> = const { Cell::new(0) };
}

/// Index of the worker this code runs on (0 outside workers); picks the pool shard.
pub(crate) fn current() -> usize {
    INDEX.with(Cell::get)
}

/// The worker threads; dropping this (and every task holding it) stops them.
pub(crate) struct Workers {
    handles: Vec<Handle>,
    next: AtomicUsize,
    _stop: Vec<oneshot::Sender<()>>,
}

impl std::fmt::Debug for Workers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Workers")
            .field("threads", &self.handles.len())
            .finish()
    }
}

impl Workers {
    /// Starts `n` workers; 0 means one per CPU.
    pub(crate) fn start(n: usize) -> Result<Self, ProxyError> {
        let n = match n {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        let mut handles = Vec::with_capacity(n);
        let mut stop = Vec::with_capacity(n);
        for i in 0..n {
            let err = |source| ProxyError::Workers { index: i, source };
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(err)?;
            let (tx, rx) = oneshot::channel::<()>();
            handles.push(rt.handle().clone());
            std::thread::Builder::new()
                .name(format!("slipway-http-{i}"))
                .spawn(move || {
                    INDEX.with(|c| c.set(i));
                    rt.block_on(async move {
                        let _ = rx.await;
                    });
                })
                .map_err(err)?;
            stop.push(tx);
        }
        Ok(Workers {
            handles,
            next: AtomicUsize::new(0),
            _stop: stop,
        })
    }

    /// Runs `task` on the next worker, round robin.
    pub(crate) fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        let i = self.next.fetch_add(1, Relaxed) % self.handles.len();
        self.handles[i].spawn(task);
    }
}
