//! Logging: silent unless the embedding program registers a sink. A library
//! has no business writing to a launcher's stdout or stderr.

use std::sync::{Arc, RwLock};

/// Severity, most severe first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Error = 1,
    Warn = 2,
    Info = 3,
    Debug = 4,
}

/// Where log lines go.
pub type Sink = Arc<dyn Fn(Level, &str) + Send + Sync>;

static SINK: RwLock<Option<(Sink, Level)>> = RwLock::new(None);

/// Send lines up to `max` to `sink`; `None` silences the library again.
pub fn set_sink(sink: Option<Sink>, max: Level) {
    let mut s = SINK.write().unwrap_or_else(|p| p.into_inner());
    *s = sink.map(|f| (f, max));
}

/// Whether a line at `level` would go anywhere (to skip formatting).
pub fn enabled(level: Level) -> bool {
    matches!(&*SINK.read().unwrap_or_else(|p| p.into_inner()), Some((_, max)) if level <= *max)
}

pub fn emit(level: Level, msg: &str) {
    // Clone the sink out so a callback that logs or re-registers can't deadlock.
    let sink = match &*SINK.read().unwrap_or_else(|p| p.into_inner()) {
        Some((f, max)) if level <= *max => f.clone(),
        _ => return,
    };
    sink(level, msg);
}

/// `vlog!(Level::Info, "format", args)`: formats only when someone listens.
#[macro_export]
macro_rules! vlog {
    ($level:expr, $($arg:tt)*) => {
        if $crate::log::enabled($level) {
            $crate::log::emit($level, &format!($($arg)*));
        }
    };
}
