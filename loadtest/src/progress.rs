//! A one-line progress bar on stderr, drawn only when stderr is a terminal: calls done,
//! elapsed time and the current rate, redrawn five times a second.

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::engine::Stop;

/// Something that counts finished calls.
pub trait Done: Send + Sync {
    /// Calls finished so far.
    fn done(&self) -> u64;
}

/// Returns true when a progress bar should be drawn (stderr is a terminal).
pub fn wanted() -> bool {
    std::io::stderr().is_terminal()
}

/// A running progress bar.
pub struct Bar {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl Bar {
    /// Clears the bar.
    pub async fn finish(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

/// Starts drawing the progress of a run that stops at `stop`.
pub fn spawn(stop: Stop, start: Instant, done: Arc<dyn Done>) -> Bar {
    let (tx, mut rx) = oneshot::channel();
    let task = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        let mut last = (Instant::now(), 0u64);
        loop {
            tokio::select! {
                _ = &mut rx => break,
                _ = tick.tick() => {}
            }
            let now = Instant::now();
            let n = done.done();
            let rate = (n - last.1.min(n)) as f64 / (now - last.0).as_secs_f64().max(1e-3);
            last = (now, n);
            let elapsed = now - start;
            let fraction = match stop {
                Stop::Count(total) => n as f64 / total.max(1) as f64,
                Stop::Duration(d) => elapsed.as_secs_f64() / d.as_secs_f64().max(1e-3),
            }
            .clamp(0.0, 1.0);
            let width = 30;
            let filled = (fraction * width as f64) as usize;
            let bar: String = "=".repeat(filled) + &" ".repeat(width - filled);
            eprint!("\r[{bar}] {:>3.0}% {n} calls {:.1}s {rate:.0}/s   ", fraction * 100.0, elapsed.as_secs_f64());
            let _ = std::io::stderr().flush();
        }
        eprint!("\r{}\r", " ".repeat(80));
        let _ = std::io::stderr().flush();
    });
    Bar { stop: tx, task }
}
