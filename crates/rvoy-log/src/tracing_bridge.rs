//! A small `tracing` subscriber that writes `tracing` events (hyper, h2, our own code)
//! through this logger: the event's target picks the component (unknown targets are
//! `misc`), the component's level filters, the pattern formats. Spans are ignored.

use std::fmt::{self, Write as _};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record as SpanRecord};
use tracing::subscriber::Interest;
use tracing::{Event, Metadata, Subscriber};

use crate::component::{self, Component};
use crate::level::Level;
use crate::logger;

/// Maps a `tracing` target to a component: an exact component name, else a few known
/// crates (`h2` is `http2`, `hyper` is `http`, ...), else the last `::` segment if it is a
/// component name, else `misc`.
pub fn component_for_target(target: &str) -> Component {
    if let Some(c) = Component::from_name(target) {
        return c;
    }
    let krate = target.split("::").next().unwrap_or(target);
    let known = match krate {
        "h2" => Some(Component::Http2),
        "hyper" | "hyper_util" | "http" | "httparse" => Some(Component::Http),
        "rustls" | "tokio_rustls" => Some(Component::Connection),
        "quinn" | "quinn_proto" | "h3" | "h3_quinn" => Some(Component::Quic),
        "hickory_resolver" | "hickory_proto" | "trust_dns_resolver" => Some(Component::Dns),
        _ => None,
    };
    known
        .or_else(|| target.rsplit("::").next().and_then(Component::from_name))
        .unwrap_or(Component::Misc)
}

/// Envoy's level for a `tracing` level.
pub fn level_for(level: &tracing::Level) -> Level {
    match *level {
        tracing::Level::TRACE => Level::Trace,
        tracing::Level::DEBUG => Level::Debug,
        tracing::Level::INFO => Level::Info,
        tracing::Level::WARN => Level::Warning,
        tracing::Level::ERROR => Level::Error,
    }
}

fn event_enabled(meta: &Metadata<'_>) -> bool {
    meta.is_event()
        && component::enabled(component_for_target(meta.target()), level_for(meta.level()))
}

/// The subscriber. Install it with [`install_tracing_bridge`].
#[derive(Debug, Default, Clone, Copy)]
pub struct TracingBridge;

impl Subscriber for TracingBridge {
    fn register_callsite(&self, meta: &'static Metadata<'static>) -> Interest {
        // Interest is cached per callsite and rebuilt whenever levels change.
        if event_enabled(meta) {
            Interest::always()
        } else {
            Interest::never()
        }
    }

    fn enabled(&self, meta: &Metadata<'_>) -> bool {
        event_enabled(meta)
    }

    fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
        use tracing::level_filters::LevelFilter;
        Some(match component::most_verbose_level() {
            Level::Trace => LevelFilter::TRACE,
            Level::Debug => LevelFilter::DEBUG,
            Level::Info => LevelFilter::INFO,
            Level::Warning => LevelFilter::WARN,
            Level::Error | Level::Critical => LevelFilter::ERROR,
            Level::Off => LevelFilter::OFF,
        })
    }

    fn new_span(&self, _span: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }

    fn record(&self, _span: &Id, _values: &SpanRecord<'_>) {}

    fn record_follows_from(&self, _span: &Id, _follows: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let meta = event.metadata();
        let component = component_for_target(meta.target());
        let level = level_for(meta.level());
        if !component::enabled(component, level) {
            return;
        }
        let mut visitor = MessageVisitor::default();
        event.record(&mut visitor);
        logger::log_message(
            component,
            level,
            meta.file().unwrap_or(""),
            meta.line().unwrap_or(0),
            "",
            &visitor.finish(),
        );
    }

    fn enter(&self, _span: &Id) {}

    fn exit(&self, _span: &Id) {}
}

/// Collects `message` first, then ` name=value` for the other fields.
#[derive(Default)]
struct MessageVisitor {
    message: String,
    fields: String,
}

impl MessageVisitor {
    fn finish(mut self) -> String {
        if self.message.is_empty() {
            self.fields.trim_start().to_owned()
        } else {
            self.message.push_str(&self.fields);
            self.message
        }
    }
}

impl Visit for MessageVisitor {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            let _ = write!(self.fields, " {}={}", field.name(), value);
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            let _ = write!(self.fields, " {}={:?}", field.name(), value);
        }
    }
}

fn rebuild_interest() {
    tracing::callsite::rebuild_interest_cache();
}

/// Makes [`TracingBridge`] the global default `tracing` subscriber; fails if one is set.
pub fn install_tracing_bridge() -> Result<(), tracing::subscriber::SetGlobalDefaultError> {
    tracing::subscriber::set_global_default(TracingBridge)?;
    component::set_on_change(rebuild_interest);
    rebuild_interest();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_map_to_components() {
        assert_eq!(component_for_target("upstream"), Component::Upstream);
        assert_eq!(component_for_target("rvoy_admin::admin"), Component::Admin);
        assert_eq!(
            component_for_target("h2::proto::connection"),
            Component::Http2
        );
        assert_eq!(
            component_for_target("hyper::proto::h1::io"),
            Component::Http
        );
        assert_eq!(component_for_target("some_crate::module"), Component::Misc);
        assert_eq!(level_for(&tracing::Level::WARN), Level::Warning);
    }
}
