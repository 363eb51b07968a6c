//! Values another part of the gateway keeps in its own atomics, exported as they are at
//! scrape time: the edge's counters and gauges, the reload counters, the JWKS and token
//! cache counters, the webhook outbox. The owner hands a
//! reader; nothing is counted twice and the request path pays nothing.

use std::sync::Arc;

use prometheus::core::{Collector, Desc};
use prometheus::proto::{Counter, Gauge, LabelPair, Metric, MetricFamily, MetricType};

use super::PREFIX;

/// Whether a mirrored value only goes up (a counter) or moves both ways (a gauge).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up.
    Counter,
    /// Goes up and down.
    Gauge,
}

/// One exported value: its name (without the gateway prefix), help text, kind and, for one
/// series of a family with a fixed label (`result="ok"`), that label. Specs sharing a name
/// form one family; give them the same help, kind and label name.
#[derive(Debug, Clone, Copy)]
pub struct Spec {
    /// Name after [`PREFIX`], e.g. `edge_connections_refused_total`.
    pub name: &'static str,
    /// Help text.
    pub help: &'static str,
    /// Counter or gauge.
    pub kind: Kind,
    /// A constant label of this series (a bounded value, never caller data).
    pub label: Option<(&'static str, &'static str)>,
}

impl Spec {
    /// An unlabelled series.
    pub const fn new(name: &'static str, help: &'static str, kind: Kind) -> Spec {
        Spec {
            name,
            help,
            kind,
            label: None,
        }
    }

    /// The series of family `name` whose label `key` is `value`.
    pub const fn labelled(
        name: &'static str,
        help: &'static str,
        kind: Kind,
        key: &'static str,
        value: &'static str,
    ) -> Spec {
        Spec {
            name,
            help,
            kind,
            label: Some((key, value)),
        }
    }
}

/// Reads the current values, in the order of the specs.
pub type Reader = Arc<dyn Fn() -> Vec<f64> + Send + Sync>;

/// A collector over values read at scrape time.
pub struct Mirrored {
    specs: Vec<Spec>,
    descs: Vec<Desc>,
    read: Reader,
}

impl std::fmt::Debug for Mirrored {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mirrored")
            .field("specs", &self.specs)
            .finish()
    }
}

impl Mirrored {
    /// A collector of `specs`, whose values `read` returns in the same order.
    pub fn new(specs: Vec<Spec>, read: Reader) -> Result<Mirrored, prometheus::Error> {
        let descs = specs
            .iter()
            .map(|s| {
                Desc::new(
                    format!("{PREFIX}{}", s.name),
                    s.help.to_string(),
                    Vec::new(),
                    s.label
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Mirrored { specs, descs, read })
    }
}

impl Collector for Mirrored {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let values = (self.read)();
        self.specs
            .iter()
            .zip(values)
            .map(|(spec, value)| {
                let mut metric = Metric::default();
                if let Some((k, v)) = spec.label {
                    let mut pair = LabelPair::default();
                    pair.set_name(k.to_string());
                    pair.set_value(v.to_string());
                    metric.set_label(vec![pair]);
                }
                let mut family = MetricFamily::default();
                family.set_name(format!("{PREFIX}{}", spec.name));
                family.set_help(spec.help.to_string());
                match spec.kind {
                    Kind::Counter => {
                        let mut c = Counter::default();
                        c.set_value(value);
                        metric.set_counter(c);
                        family.set_field_type(MetricType::COUNTER);
                    }
                    Kind::Gauge => {
                        let mut g = Gauge::default();
                        g.set_value(value);
                        metric.set_gauge(g);
                        family.set_field_type(MetricType::GAUGE);
                    }
                }
                family.mut_metric().push(metric);
                family
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirrored_values_are_encoded_with_their_kind() {
        let specs = vec![
            Spec::new("test_refused_total", "Refused.", Kind::Counter),
            Spec::new("test_open", "Open.", Kind::Gauge),
            Spec::labelled(
                "test_fetches_total",
                "Fetches.",
                Kind::Counter,
                "result",
                "ok",
            ),
            Spec::labelled(
                "test_fetches_total",
                "Fetches.",
                Kind::Counter,
                "result",
                "failed",
            ),
        ];
        let m = Mirrored::new(specs, Arc::new(|| vec![3.0, 7.0, 5.0, 2.0])).expect("valid names");
        let registry = prometheus::Registry::new();
        registry.register(Box::new(m)).expect("registered");
        let text = prometheus::TextEncoder::new()
            .encode_to_string(&registry.gather())
            .expect("encoded");
        assert!(
            text.contains("# TYPE cortex_gateway_test_refused_total counter"),
            "{text}"
        );
        assert!(
            text.contains("cortex_gateway_test_refused_total 3"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE cortex_gateway_test_open gauge"),
            "{text}"
        );
        assert!(text.contains("cortex_gateway_test_open 7"), "{text}");
        // Labelled series of one name form one family.
        assert_eq!(
            text.matches("# TYPE cortex_gateway_test_fetches_total counter")
                .count(),
            1,
            "{text}"
        );
        assert!(
            text.contains("cortex_gateway_test_fetches_total{result=\"ok\"} 5"),
            "{text}"
        );
        assert!(
            text.contains("cortex_gateway_test_fetches_total{result=\"failed\"} 2"),
            "{text}"
        );
    }
}
