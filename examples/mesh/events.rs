//! A security-event sink that prints each event and keeps it for the tour's checks.

use std::sync::Arc;

use zerotrust::core::{EventSink, MemorySink, SecurityEvent};

/// Prints events as they happen and stores them.
#[derive(Debug)]
pub(crate) struct PrintingSink {
    pub(crate) memory: Arc<MemorySink>,
    pub(crate) print: bool,
}

impl EventSink for PrintingSink {
    fn send(&self, event: SecurityEvent) {
        if self.print {
            println!("    security event: {event}");
        }
        self.memory.send(event);
    }
}
