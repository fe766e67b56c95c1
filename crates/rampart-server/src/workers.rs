//! Connection loops: each accepted connection is served, from its first byte to its close, by
//! one of several single-threaded event loops (one per CPU by default, `RAMPART_WORKERS`).
//!
//! The accept loop runs on the shared runtime and hands each new connection to the loop with
//! the fewest open connections (ties go round the loops in turn), so a few long-lived
//! connections from a proxy in front still spread evenly. The socket moves to the chosen loop's
//! own reactor; every task the connection starts (HTTP/2 streams, the reverse proxy's upstream
//! connections, WebSocket splices, which keep counting as open) runs on that loop too. A
//! proxied request and its upstream exchange then stay on one thread instead of hopping
//! between the client connection's task and the pool's connection task on different cores: on
//! the proxied path this served 25–43% more requests per second than the shared work-stealing
//! runtime (ADR 0010).
//!
//! What stays elsewhere: accepting and the background tasks started at startup (audit writer,
//! sweepers) run on the shared runtime, password hashing on threads of its own. Work that
//! leaves the request's task still crosses threads: an audit append waits for the writer, a
//! Redis command for its connection's task. `RAMPART_WORKERS=0` serves every connection on the
//! shared runtime instead.

use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::net::TcpStream;
use tokio::sync::mpsc;

/// What serves one connection once it is on its loop.
pub type Job = Box<dyn FnOnce(TcpStream) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send>;

/// A connection on its way to a loop, counted there from the moment it was chosen.
type Handover = (std::net::TcpStream, Job, Open);

/// The connection loops. Dropping this ends them: tasks still running on them (connections
/// that outlived the graceful shutdown, WebSocket splices) are dropped and their sockets
/// closed. The server keeps it until it has drained in-flight requests, flushed the audit log
/// and closed the database, whose connections may be driven by a loop's reactor.
#[derive(Debug)]
pub struct Workers {
    loops: Vec<Loop>,
    /// Where the next search for the least busy loop starts.
    next: AtomicUsize,
}

#[derive(Debug)]
struct Loop {
    tx: mpsc::UnboundedSender<Handover>,
    open: Arc<AtomicUsize>,
}

/// One open connection (or WebSocket splice) counted on a loop until this is dropped.
#[derive(Debug)]
pub struct Open(Arc<AtomicUsize>);

impl Open {
    fn new(count: &Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        Self(Arc::clone(count))
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

thread_local! {
    /// The open-connection count of the loop running on this thread, if it is one.
    static THIS_LOOP: RefCell<Option<Arc<AtomicUsize>>> = const { RefCell::new(None) };
}

/// Counts one more open connection on the loop this runs on (none off the loops), for work
/// that outlives its HTTP connection, such as a WebSocket splice.
pub fn count_on_this_loop() -> Option<Open> {
    THIS_LOOP.with_borrow(|count| count.as_ref().map(Open::new))
}

impl Workers {
    /// Starts `count` loops (at least one), each on its own thread named `rampart-conn-<i>`.
    ///
    /// # Errors
    /// When a thread or its runtime cannot be created. Loops started before the failure end.
    pub fn start(count: usize) -> io::Result<Self> {
        let mut loops = Vec::with_capacity(count.max(1));
        for i in 0..count.max(1) {
            let (tx, rx) = mpsc::unbounded_channel::<Handover>();
            let open = Arc::new(AtomicUsize::new(0));
            let (started_tx, started) = std::sync::mpsc::channel::<io::Result<()>>();
            let count = Arc::clone(&open);
            std::thread::Builder::new()
                .name(format!("rampart-conn-{i}"))
                .spawn(move || run_loop(rx, count, &started_tx))?;
            started.recv().map_err(|_| io::Error::other("a connection loop did not start"))??;
            loops.push(Loop { tx, open });
        }
        Ok(Self { loops, next: AtomicUsize::new(0) })
    }

    /// Open connections per loop, in loop order.
    pub fn open_connections(&self) -> Vec<usize> {
        self.loops.iter().map(|l| l.open.load(Ordering::Relaxed)).collect()
    }

    /// Serves `stream` with `job` on the loop with the fewest open connections. When no loop
    /// takes it (a loop's thread is gone), the connection is served on the current runtime.
    pub fn dispatch(&self, stream: TcpStream, job: Job) {
        let mut stream = match stream.into_std() {
            Ok(s) => s,
            Err(e) => return tracing::warn!(error = %e, "cannot hand a connection over"),
        };
        let mut job = job;
        for index in self.order() {
            let lane = &self.loops[index];
            match lane.tx.send((stream, job, Open::new(&lane.open))) {
                Ok(()) => return,
                // The count is undone as the guard drops; the connection tries the next loop.
                Err(mpsc::error::SendError((back, back_job, _open))) => {
                    tracing::warn!(worker = index, "a connection loop has stopped");
                    (stream, job) = (back, back_job);
                }
            }
        }
        match TcpStream::from_std(stream) {
            Ok(stream) => drop(tokio::spawn(job(stream))),
            Err(e) => tracing::warn!(error = %e, "cannot take a connection"),
        }
    }

    /// Loop indexes, least busy first; among equally busy ones, starting after the loop the
    /// previous connection went to.
    fn order(&self) -> Vec<usize> {
        let n = self.loops.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
        let mut order: Vec<usize> = (0..n).map(|k| (start + k) % n).collect();
        order.sort_by_key(|&i| self.loops[i].open.load(Ordering::Relaxed));
        order
    }
}

/// The body of a loop's thread: its runtime, then every connection handed to it, each a task
/// holding its count until it ends.
fn run_loop(
    mut rx: mpsc::UnboundedReceiver<Handover>,
    count: Arc<AtomicUsize>,
    started: &std::sync::mpsc::Sender<io::Result<()>>,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            let _ = started.send(Err(e));
            return;
        }
    };
    THIS_LOOP.with_borrow_mut(|this| *this = Some(count));
    let _ = started.send(Ok(()));
    runtime.block_on(async move {
        while let Some((stream, job, open)) = rx.recv().await {
            match TcpStream::from_std(stream) {
                Ok(stream) => drop(tokio::spawn(async move {
                    let _open = open;
                    job(stream).await;
                })),
                Err(e) => tracing::warn!(error = %e, "cannot take a connection"),
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Duration;

    use tokio::net::TcpListener;
    use tokio::sync::oneshot;

    use super::*;

    /// A job from an async closure over the connection's stream.
    fn job<F, Fut>(f: F) -> Job
    where
        F: FnOnce(TcpStream) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        Box::new(move |stream| Box::pin(f(stream)))
    }

    /// A connected pair: the server side (to dispatch) and the client side (kept open).
    async fn pair(listener: &TcpListener) -> (TcpStream, TcpStream) {
        let client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        (server, client)
    }

    async fn until(mut done: impl FnMut() -> bool) {
        for _ in 0..500 {
            if done() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("condition not reached within 5 s");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn connections_go_to_the_least_busy_loop_and_run_on_its_thread() {
        let workers = Workers::start(2).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let threads = Arc::new(Mutex::new(Vec::new()));
        let mut releases = Vec::new();
        let mut clients = Vec::new();
        for i in 0..4 {
            let (server, client) = pair(&listener).await;
            clients.push(client);
            let (release, released) = oneshot::channel::<()>();
            releases.push(release);
            let threads = Arc::clone(&threads);
            workers.dispatch(
                server,
                job(move |stream| async move {
                    let name = std::thread::current().name().unwrap_or("").to_owned();
                    threads.lock().unwrap().push((i, name));
                    let _ = released.await;
                    drop(stream);
                }),
            );
        }
        until(|| threads.lock().unwrap().len() == 4).await;
        assert_eq!(workers.open_connections(), vec![2, 2]);
        let mut ran = threads.lock().unwrap().clone();
        ran.sort();
        let names: Vec<&str> = ran.iter().map(|(_, n)| n.as_str()).collect();
        // Round the loops in turn while they are equally busy.
        assert_eq!(names, ["rampart-conn-0", "rampart-conn-1", "rampart-conn-0", "rampart-conn-1"]);

        // Both connections on loop 0 end: the next two both go there.
        let mut kept = Vec::new();
        for (release, (_, name)) in releases.drain(..).zip(&ran) {
            if name == "rampart-conn-0" {
                let _ = release.send(());
            } else {
                kept.push(release);
            }
        }
        until(|| workers.open_connections() == vec![0, 2]).await;
        for _ in 0..2 {
            let (server, client) = pair(&listener).await;
            clients.push(client);
            workers.dispatch(
                server,
                job(|stream| async move {
                    let _stream = stream;
                    std::future::pending::<()>().await;
                }),
            );
        }
        assert_eq!(workers.open_connections(), vec![2, 2]);
    }

    #[tokio::test]
    async fn the_connection_keeps_working_on_its_new_loop() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let workers = Workers::start(1).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (server, mut client) = pair(&listener).await;
        workers.dispatch(
            server,
            job(|mut stream| async move {
                let mut buf = [0u8; 4];
                stream.read_exact(&mut buf).await.unwrap();
                buf.reverse();
                stream.write_all(&buf).await.unwrap();
            }),
        );
        client.write_all(b"abcd").await.unwrap();
        let mut back = [0u8; 4];
        client.read_exact(&mut back).await.unwrap();
        assert_eq!(&back, b"dcba");
        until(|| workers.open_connections() == vec![0]).await;
    }

    #[tokio::test]
    async fn work_that_outlives_its_connection_keeps_counting_on_its_loop() {
        assert!(count_on_this_loop().is_none(), "not a loop thread");
        let workers = Workers::start(1).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (server, _client) = pair(&listener).await;
        let (release, released) = oneshot::channel::<()>();
        workers.dispatch(
            server,
            job(move |stream| async move {
                drop(stream);
                let held = count_on_this_loop();
                tokio::spawn(async move {
                    let _held = held;
                    let _ = released.await;
                });
            }),
        );
        // The connection's task has ended; the spawned work still counts.
        until(|| workers.open_connections() == vec![1]).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(workers.open_connections(), vec![1]);
        release.send(()).unwrap();
        until(|| workers.open_connections() == vec![0]).await;
    }

    #[tokio::test]
    async fn a_stopped_loop_is_skipped_and_its_count_undone() {
        let (tx, rx) = mpsc::unbounded_channel::<Handover>();
        drop(rx);
        let stopped = Loop { tx, open: Arc::new(AtomicUsize::new(0)) };
        let workers = Workers { loops: vec![stopped], next: AtomicUsize::new(0) };
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (server, mut client) = pair(&listener).await;
        workers.dispatch(
            server,
            job(|mut stream| async move {
                use tokio::io::AsyncWriteExt;
                stream.write_all(b"served").await.unwrap();
            }),
        );
        use tokio::io::AsyncReadExt;
        let mut got = Vec::new();
        client.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"served", "served on the current runtime instead");
        assert_eq!(workers.open_connections(), vec![0]);
    }
}
