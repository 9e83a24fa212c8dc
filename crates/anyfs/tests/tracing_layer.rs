//! `TracingLayer`: one event per operation, and every record and denial in
//! the audit sink.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::thread;

use anyfs::prelude::*;
use anyfs::{
    FileStorage, FsErrorKind, MemoryAuditSink, MemoryBackend, PathFilterLayer, TracingLayer,
};
use tracing_core::field::{Field, Visit};
use tracing_core::span::{Attributes, Id, Record};
use tracing_core::{Event, Level, Metadata, Subscriber};

/// One captured event: target, level and fields as text.
#[derive(Debug, Clone)]
struct Captured {
    target: String,
    level: Level,
    fields: HashMap<String, String>,
}

#[derive(Default, Clone)]
struct Capture(Arc<Mutex<Vec<Captured>>>);

struct Fields<'a>(&'a mut HashMap<String, String>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().to_string(), format!("{value:?}"));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_string(), value.to_string());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().to_string(), value.to_string());
    }
}

impl Subscriber for Capture {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut fields = HashMap::new();
        event.record(&mut Fields(&mut fields));
        self.0.lock().unwrap().push(Captured {
            target: event.metadata().target().to_string(),
            level: *event.metadata().level(),
            fields,
        });
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
    fn max_level_hint(&self) -> Option<tracing_core::LevelFilter> {
        Some(tracing_core::LevelFilter::TRACE)
    }
}

fn capture(f: impl FnOnce()) -> Vec<Captured> {
    let capture = Capture::default();
    tracing::subscriber::with_default(capture.clone(), f);
    capture.0.lock().unwrap().clone()
}

#[test]
fn one_event_per_operation_with_its_facts() {
    let fs = FileStorage::new(TracingLayer::new().layer(MemoryBackend::new()));
    let events = capture(|| {
        fs.write("/notes.txt", "hello").unwrap();
        fs.read("/notes.txt").unwrap();
        fs.rename("/notes.txt", "/moved.txt").unwrap();
        let _ = fs.read("/notes.txt");
        fs.write_range("/moved.txt", 2, "LL").unwrap();
    });
    assert_eq!(events.len(), 5, "{events:#?}");
    let write = &events[0];
    assert_eq!(write.target, "anyfs");
    assert_eq!(write.level, Level::INFO);
    assert_eq!(write.fields["op"], "write");
    assert_eq!(write.fields["path"], "/notes.txt");
    assert_eq!(write.fields["outcome"], "ok");
    assert_eq!(write.fields["bytes"], "5");
    assert!(write.fields.contains_key("duration_us"));
    assert_eq!(events[1].fields["bytes"], "5");
    assert_eq!(events[2].fields["to"], "/moved.txt");
    assert_eq!(events[3].fields["outcome"], "NotFound");
    assert!(events[3].fields["error"].contains("not found"));
    assert_eq!(events[4].fields["op"], "write_range");
    assert_eq!(events[4].fields["path"], "/moved.txt");
    assert_eq!(events[4].fields["bytes"], "2");
}

#[test]
fn target_and_level_are_chosen_by_the_layer() {
    let fs = FileStorage::new(
        TracingLayer::new()
            .with_target("agent.audit")
            .with_level(Level::DEBUG)
            .layer(MemoryBackend::new()),
    );
    let events = capture(|| fs.create_dir("/d").unwrap());
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].target, "agent.audit");
    assert_eq!(events[0].level, Level::DEBUG);
}

#[test]
fn contents_never_appear_in_events_or_records() {
    let sink = Arc::new(MemoryAuditSink::default());
    let fs = FileStorage::new(
        TracingLayer::new()
            .with_sink(sink.clone())
            .layer(MemoryBackend::new()),
    );
    let secret = "sk-live-0123456789abcdef";
    let events = capture(|| {
        fs.write("/key.txt", secret).unwrap();
        fs.read_to_string("/key.txt").unwrap();
    });
    let all = format!("{events:?}{:?}", sink.records());
    assert!(
        !all.contains(secret),
        "file content leaked into the audit trail"
    );
}

#[test]
fn denials_from_inner_layers_are_recorded() {
    let sink = Arc::new(MemoryAuditSink::default());
    let fs = FileStorage::new(
        MemoryBackend::new()
            .layer(
                PathFilterLayer::builder()
                    .allow("/workspace/**")
                    .deny("**/.env")
                    .build(),
            )
            .layer(TracingLayer::new().with_sink(sink.clone())),
    );
    fs.create_dir("/workspace").unwrap();
    fs.write("/workspace/ok.txt", "fine").unwrap();
    assert!(fs.write("/workspace/.env", "KEY=1").is_err());
    assert!(fs.read("/etc/passwd").is_err());
    let records = sink.records();
    assert_eq!(records.len(), 4);
    assert!(!records[1].is_denial());
    assert_eq!(records[2].error_kind, Some(FsErrorKind::AccessDenied));
    assert!(records[2].is_denial());
    assert_eq!(
        records[2].path.as_deref(),
        Some(std::path::Path::new("/workspace/.env"))
    );
    assert!(records[3].is_denial());
    assert!(
        records[3]
            .error
            .as_deref()
            .unwrap()
            .contains("the path filter does not allow it")
    );
    // A path refused while it is resolved (it passes through a directory no
    // rule allows) is recorded too, under the path asked for.
    assert!(fs.read("/etc/x/../../workspace/ok.txt").is_err());
    let records = sink.records();
    assert_eq!(records.len(), 5);
    assert!(records[4].is_denial());
    assert_eq!(records[4].operation, "resolve");
    assert_eq!(
        records[4].path.as_deref(),
        Some(std::path::Path::new("/etc/x/../../workspace/ok.txt"))
    );
    assert!(
        records[4]
            .error
            .as_deref()
            .unwrap()
            .contains("the path filter does not allow it")
    );
}

#[test]
fn every_operation_of_eight_threads_is_recorded_once() {
    let sink = Arc::new(MemoryAuditSink::default());
    let fs = FileStorage::new(
        TracingLayer::new()
            .with_sink(sink.clone())
            .layer(MemoryBackend::new()),
    );
    thread::scope(|s| {
        for t in 0..8 {
            let fs = &fs;
            s.spawn(move || {
                for i in 0..100 {
                    fs.write(format!("/t{t}-{i}"), "x").unwrap();
                }
            });
        }
    });
    let records = sink.records();
    assert_eq!(records.len(), 800);
    let mut paths: Vec<_> = records.iter().map(|r| r.path.clone().unwrap()).collect();
    paths.sort();
    paths.dedup();
    assert_eq!(paths.len(), 800);
}

/// Clones of one guarded backend share its open handles: a handle opened
/// through one clone and written through another is judged and recorded
/// with its path, as it would be through the first.
#[test]
fn a_handle_opened_through_one_clone_keeps_its_path_through_another() {
    use anyfs::{Handle, OpenFlags};
    use std::path::Path;

    let sink = Arc::new(MemoryAuditSink::default());
    let first = MemoryBackend::new().layer(TracingLayer::new().with_sink(sink.clone()));
    let second = first.clone();
    let handle: Handle = first
        .open(Path::new("/notes.txt"), OpenFlags::CREATE)
        .unwrap();
    second.write_at(handle, b"written elsewhere", 0).unwrap();
    second.close(handle).unwrap();

    let records = sink.records();
    for operation in ["write_at", "close"] {
        let record = records.iter().find(|r| r.operation == operation).unwrap();
        assert_eq!(
            record.path.as_deref(),
            Some(Path::new("/notes.txt")),
            "{operation} was recorded without the handle's path"
        );
    }
}
