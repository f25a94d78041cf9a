//! Store semantics: handle identity, sharding across real threads, used
//! flags, counter reset, gauge math, histogram merging, stats matcher,
//! status-code tables, flush deltas, and Envoy-verified tag extraction.

use std::sync::Arc;

use rvoy_stats::render::{self, StatsParams};
use rvoy_stats::{
    GaugeImportMode, HistogramUnit, ListMatcher, ParamsError, StatusCodeCounters, Store,
    StoreOptions, TagProducer,
};

fn text(store: &Store, query: &str) -> String {
    let mut out = String::new();
    render::render_stats(
        &store.snapshot(),
        &StatsParams::parse(query).expect("params"),
        &mut out,
    );
    out
}

#[test]
fn same_name_same_handle() {
    let store = Store::new();
    let a = store.counter("cluster.backend.upstream_rq_total");
    let scope = store.scope("cluster.backend");
    let b = scope.counter("upstream_rq_total");
    assert_eq!(a, b);
    assert_eq!(
        store.scope("cluster.backend.").counter("upstream_rq_total"),
        a
    );
    assert_eq!(
        scope.scope("circuit_breakers").prefix(),
        "cluster.backend.circuit_breakers."
    );
    // Kinds have separate namespaces, like Envoy.
    let g = store.gauge(
        "cluster.backend.upstream_rq_total",
        GaugeImportMode::Accumulate,
    );
    assert!(!g.is_null());
    assert_ne!(store.counter("x"), store.counter("y"));
    a.add(2);
    b.inc();
    assert_eq!(store.counter_value(a), 3);
    assert_eq!(store.len(), 4);
}

#[test]
fn shards_merge_across_threads() {
    let store = Store::new();
    let c = store.counter("c");
    let g = store.gauge("g", GaugeImportMode::Accumulate);
    let h = store.histogram("h", HistogramUnit::Milliseconds);
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                let _guard = store.register_thread();
                for i in 0..10_000u64 {
                    c.inc();
                    g.add(3);
                    g.sub(1);
                    if i < 25 {
                        h.record(t * 25 + i + 1);
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("thread");
    }
    assert_eq!(store.counter_value(c), 40_000);
    assert_eq!(store.gauge_value(g), 80_000);
    // Shards of exited threads are reused and keep their values.
    std::thread::scope(|s| {
        s.spawn(|| {
            c.add(5);
            g.sub(80_000);
        });
    });
    assert_eq!(store.counter_value(c), 40_005);
    assert_eq!(store.gauge_value(g), 0);
    store.merge_histograms();
    let snap = store.snapshot();
    let hv = snap.histogram("h").expect("h");
    assert_eq!(hv.cumulative().sample_count, 100);
    // Same values Envoy reports for 1..=100 (see histogram unit tests).
    assert_eq!(hv.cumulative().quantiles[2], 50.5);
    assert_eq!(hv.interval().quantiles[2], 50.5);
}

#[test]
fn used_only_and_histogram_used() {
    let store = Store::new();
    store.counter("a.never");
    store.counter("a.zero").add(0);
    store.counter("a.one").inc();
    store.gauge("a.gauge_never", GaugeImportMode::Accumulate);
    store
        .gauge("a.gauge_set", GaugeImportMode::Accumulate)
        .set(0);
    let h = store.histogram("a.hist", HistogramUnit::Unspecified);
    h.record(1);
    assert_eq!(
        text(&store, "usedonly"),
        "a.gauge_set: 0\na.one: 1\na.zero: 0\n"
    );
    // Recorded but not yet merged: Envoy shows no values until a flush.
    assert!(text(&store, "").ends_with("a.hist: No recorded values\n"));
    store.merge_histograms();
    let t = text(&store, "usedonly&filter=hist");
    assert_eq!(
        t,
        "a.hist: P0(1.05,1.05) P25(1.05,1.05) P50(1.05,1.05) P75(1.05,1.05) P90(1.05,1.05) \
         P95(1.05,1.05) P99(1.05,1.05) P99.5(1.05,1.05) P99.9(1.05,1.05) P100(1.05,1.05)\n"
    );
    store.merge_histograms();
    assert!(text(&store, "filter=hist").starts_with("a.hist: P0(nan,1.05) P25(nan,1.05)"));
}

#[test]
fn reset_counters_and_flush_deltas() {
    let store = Store::new();
    let c = store.counter("c");
    let d = store.counter("d");
    c.add(10);
    let snap = store.flush();
    assert_eq!(snap.counter("c").expect("c").delta(), Some(10));
    c.add(5);
    let snap = store.flush();
    assert_eq!(snap.counter("c").expect("c").delta(), Some(5));
    assert_eq!(snap.counter("c").expect("c").value(), 15);
    assert_eq!(snap.counter("d").expect("d").delta(), Some(0));
    assert_eq!(store.snapshot().counter("c").expect("c").delta(), None);
    c.add(7);
    store.reset_counters();
    assert_eq!(store.counter_value(c), 0);
    let snap = store.flush();
    let cv = snap.counter("c").expect("c");
    assert_eq!((cv.value(), cv.delta(), cv.used()), (0, Some(0), true));
    assert!(!snap.counter("d").expect("d").used());
    c.inc();
    d.inc();
    assert_eq!(store.counter_value(c), 1);
    assert_eq!(store.flush().counter("c").expect("c").delta(), Some(1));
}

#[test]
fn gauge_set_add_sub() {
    let store = Store::new();
    let g = store.gauge("g", GaugeImportMode::NeverImport);
    g.add(10);
    std::thread::scope(|s| {
        s.spawn(|| g.add(5));
    });
    g.set(100);
    assert_eq!(store.gauge_value(g), 100);
    std::thread::scope(|s| {
        s.spawn(|| g.dec());
    });
    g.inc();
    g.inc();
    assert_eq!(store.gauge_value(g), 101);
    g.set(0);
    g.sub(1); // wraps like Envoy's uint64_t gauge
    assert_eq!(store.gauge_value(g), u64::MAX);
    g.inc();
    let snap = store.snapshot();
    let gv = snap.gauge("g").expect("g");
    assert_eq!(
        (gv.value(), gv.import_mode()),
        (0, GaugeImportMode::NeverImport)
    );
    let hidden = store.gauge("hidden", GaugeImportMode::HiddenAccumulate);
    hidden.set(3);
    assert!(!text(&store, "").contains("hidden"));
    assert_eq!(text(&store, "hidden=only"), "hidden: 3\n");
}

#[test]
fn matcher_rejects() {
    let matcher = ListMatcher::Exclusion(vec![Arc::new(|n: &str| n.contains("reject"))]);
    let store = Store::with_options(StoreOptions {
        matcher: Some(Arc::new(matcher)),
        ..Default::default()
    });
    let c = store.counter("a.reject_me");
    assert!(c.is_null());
    c.inc();
    assert!(
        store
            .histogram("reject.h", HistogramUnit::Unspecified)
            .is_null()
    );
    store.counter("a.keep").inc();
    assert_eq!(text(&store, ""), "a.keep: 1\n");
    let all = Store::with_options(StoreOptions {
        matcher: Some(Arc::new(ListMatcher::RejectAll(true))),
        ..Default::default()
    });
    assert!(all.counter("x").is_null());
    let incl = Store::with_options(StoreOptions {
        matcher: Some(Arc::new(ListMatcher::Inclusion(vec![Arc::new(
            |n: &str| n.starts_with("cluster."),
        )]))),
        ..Default::default()
    });
    assert!(incl.counter("http.x").is_null());
    assert!(!incl.counter("cluster.x").is_null());
}

#[test]
fn status_code_counters() {
    let store = Store::new();
    let scope = store.scope("cluster.backend");
    let codes = Arc::new(StatusCodeCounters::new(&scope, "upstream_rq_"));
    std::thread::scope(|s| {
        for _ in 0..2 {
            let codes = codes.clone();
            s.spawn(move || {
                for _ in 0..100 {
                    codes.inc(503);
                    codes.inc(200);
                }
            });
        }
    });
    codes.inc(99);
    codes.inc(600);
    assert!(codes.code(99).is_null() && codes.code(600).is_null());
    assert!(codes.class(99).is_null() && codes.class(600).is_null());
    assert_eq!(codes.code(503), scope.counter("upstream_rq_503"));
    let mut out = String::new();
    let params = StatsParams::parse("").expect("params");
    render::render_prometheus(&store.snapshot(), &params, &mut out);
    assert_eq!(
        out,
        "# TYPE envoy_cluster_upstream_rq counter\n\
         envoy_cluster_upstream_rq{envoy_response_code=\"200\",envoy_cluster_name=\"backend\"} 200\n\
         envoy_cluster_upstream_rq{envoy_response_code=\"503\",envoy_cluster_name=\"backend\"} 200\n\
         # TYPE envoy_cluster_upstream_rq_xx counter\n\
         envoy_cluster_upstream_rq_xx{envoy_response_code_class=\"2\",envoy_cluster_name=\"backend\"} 200\n\
         envoy_cluster_upstream_rq_xx{envoy_response_code_class=\"5\",envoy_cluster_name=\"backend\"} 200\n"
    );
    // Both ends of the range, in tables of their own.
    assert_eq!(codes.code(100), scope.counter("upstream_rq_100"));
    assert_eq!(codes.code(599), scope.counter("upstream_rq_599"));
    assert_eq!(codes.class(599), scope.counter("upstream_rq_5xx"));
}

#[test]
fn prometheus_ordering_is_token_wise() {
    // Envoy sorts by symbol-table tokens: `backend` < `backend-2` even though
    // `-` sorts before `.` bytewise; /stats text uses plain string order.
    let store = Store::new();
    store.counter("cluster.backend-2.upstream_rq_total").inc();
    store.counter("cluster.backend.upstream_rq_total").add(2);
    let mut out = String::new();
    render::render_prometheus(&store.snapshot(), &StatsParams::default(), &mut out);
    assert_eq!(
        out,
        "# TYPE envoy_cluster_upstream_rq_total counter\n\
         envoy_cluster_upstream_rq_total{envoy_cluster_name=\"backend\"} 2\n\
         envoy_cluster_upstream_rq_total{envoy_cluster_name=\"backend-2\"} 1\n"
    );
    assert_eq!(
        text(&store, ""),
        "cluster.backend-2.upstream_rq_total: 1\ncluster.backend.upstream_rq_total: 2\n"
    );
    assert_eq!(
        text(&store, "format=json"),
        "{\"stats\":[{\"name\":\"cluster.backend-2.upstream_rq_total\",\"value\":1},\
         {\"name\":\"cluster.backend.upstream_rq_total\",\"value\":2}]}"
    );
}

fn tags(p: &TagProducer, name: &str) -> String {
    let (n, t) = p.produce_tags(name);
    let t: Vec<String> = t
        .iter()
        .map(|t| format!("{}={}", t.name, t.value))
        .collect();
    format!("{n} {{{}}}", t.join(","))
}

/// Every case below is what Envoy 1.40 printed in `/stats/prometheus` for
/// stats it created from the probe config in `tests/data/envoy_probe`.
#[test]
fn default_tag_extractors_match_envoy() {
    let p = TagProducer::default();
    let cases = [
        (
            "cluster.backend.upstream_rq_200",
            "cluster.upstream_rq {envoy.response_code=200,envoy.cluster_name=backend}",
        ),
        (
            "cluster.backend.upstream_rq_2xx",
            "cluster.upstream_rq_xx {envoy.response_code_class=2,envoy.cluster_name=backend}",
        ),
        (
            "cluster.backend.external.upstream_rq_503",
            "cluster.external.upstream_rq {envoy.response_code=503,envoy.cluster_name=backend}",
        ),
        (
            "cluster.c.grpc.svc.meth.upstream_rq_total",
            "cluster.grpc.upstream_rq_total {envoy.grpc_bridge_method=meth,envoy.grpc_bridge_service=svc,envoy.cluster_name=c}",
        ),
        (
            "cluster.hc.health_check.name.hcn.assignment_stale",
            "cluster.health_check.assignment_stale {envoy.health_check_name=hcn,envoy.cluster_name=hc}",
        ),
        (
            "cluster.e.ext_authz.eapfx.assignment_stale",
            "cluster.ext_authz.assignment_stale {envoy.cluster_name=e,envoy.ext_authz_prefix=eapfx}",
        ),
        (
            "cluster.http_local_rate_limit.assignment_stale",
            "assignment_stale {envoy.local_http_ratelimit_prefix=cluster,envoy.cluster_name=http_local_rate_limit}",
        ),
        (
            "cluster.rbac.assignment_stale",
            "assignment_stale {envoy.rbac_prefix=cluster,envoy.cluster_name=rbac}",
        ),
        (
            "cluster.t.ssl.certificate.cert1.assignment_stale",
            "cluster.ssl.certificate.assignment_stale {envoy.tls_certificate=cert1,envoy.cluster_name=t}",
        ),
        (
            "cluster.d.ssl.ciphers.AES128.assignment_stale",
            "cluster.ssl.ciphers.AES128.assignment_stale {envoy.cluster_name=d}",
        ),
        (
            "cluster.10.0.0.1_80.assignment_stale",
            "cluster.0.0.1_80.assignment_stale {envoy.cluster_name=10}",
        ),
        (
            "cluster.w.worker_3.assignment_stale",
            "cluster.worker_3.assignment_stale {envoy.cluster_name=w}",
        ),
        (
            "http.p.user_agent.ua.downstream_cx_total",
            "http.user_agent.downstream_cx_total {envoy.http_user_agent=ua,envoy.http_conn_manager_prefix=p}",
        ),
        (
            "http.p2.fault.dc.downstream_cx_total",
            "http.fault.downstream_cx_total {envoy.fault_downstream_cluster=dc,envoy.http_conn_manager_prefix=p2}",
        ),
        (
            "http.p3.dynamodb.operation.GetItem.downstream_rq_2xx",
            "http.dynamodb.operation.downstream_rq_xx {envoy.response_code_class=2,envoy.dynamo_operation=GetItem,envoy.http_conn_manager_prefix=p3}",
        ),
        (
            "http.p5.rds.rcname.tracing.client_enabled",
            "http.rds.client_enabled {envoy.rds_route_config=rcname.tracing,envoy.http_conn_manager_prefix=p5}",
        ),
        (
            "http.p6.scoped_rds.srcname.downstream_cx_total",
            "http.scoped_rds.downstream_cx_total {envoy.scoped_rds_config=srcname,envoy.http_conn_manager_prefix=p6}",
        ),
        (
            "http.p7.rbac.rules.downstream_cx_total",
            "http.rbac.downstream_cx_total {envoy.rbac_http_prefix=rules,envoy.http_conn_manager_prefix=p7}",
        ),
        (
            "http.p8.ext_authz.eap.downstream_cx_total",
            "http.ext_authz.downstream_cx_total {envoy.ext_authz_prefix=eap,envoy.http_conn_manager_prefix=p8}",
        ),
        (
            "listener.127.0.0.1_11001.http.ingress_http.downstream_rq_completed",
            "listener.http.downstream_rq_completed {envoy.http_conn_manager_prefix=ingress_http,envoy.listener_address=127.0.0.1_11001}",
        ),
        (
            "listener.[__1]_11011.downstream_cx_total",
            "listener.downstream_cx_total {envoy.listener_address=[__1]_11011}",
        ),
        (
            "listener.mylistener.downstream_cx_total",
            "listener.downstream_cx_total {envoy.listener_address=mylistener}",
        ),
        (
            "listener.127.0.0.1_11001.worker_0.downstream_cx_total",
            "listener.worker_downstream_cx_total {envoy.worker_id=0,envoy.listener_address=127.0.0.1_11001}",
        ),
        (
            "listener.admin.downstream_cx_total",
            "listener.admin.downstream_cx_total {}",
        ),
        (
            "listener.admin.http.admin.downstream_rq_completed",
            "listener.admin.http.downstream_rq_completed {envoy.http_conn_manager_prefix=admin}",
        ),
        (
            "server.worker_0.watchdog_miss",
            "server.worker_watchdog_miss {envoy.worker_id=0}",
        ),
        (
            "thread_local_cluster_manager.worker_0.clusters_inflated",
            "thread_local_cluster_manager.worker_clusters_inflated {envoy.worker_id=0}",
        ),
        (
            "tcp.tp.downstream_cx_total",
            "tcp.downstream_cx_total {envoy.tcp_prefix=tp}",
        ),
        (
            "mongo.m.collection.col.callsite.cs.query.decoding_error",
            "mongo.collection.callsite.query.decoding_error {envoy.mongo_callsite=cs,envoy.mongo_collection=col,envoy.mongo_prefix=m}",
        ),
        (
            "mongo.m2.cmd.find.decoding_error",
            "mongo.cmd.decoding_error {envoy.mongo_cmd=find,envoy.mongo_prefix=m2}",
        ),
        (
            "connection_limit.cl.limited_connections",
            "connection_limit.limited_connections {envoy.connection_limit_prefix=cl}",
        ),
        (
            "local_rate_limit.lrl.rate_limited",
            "local_rate_limit.rate_limited {envoy.local_network_ratelimit_prefix=lrl}",
        ),
        (
            "proxy_proto.ppx.versions.v1.disallowed",
            "proxy_proto.disallowed {envoy.proxy_protocol_prefix=ppx,envoy.proxy_protocol_version=1}",
        ),
        (
            "proxy_proto.ppx.not_found_allowed",
            "proxy_proto.not_found_allowed {envoy.proxy_protocol_prefix=ppx}",
        ),
        (
            "redis.rds1.command.append.delay_fault",
            "redis.command.append.delay_fault {envoy.redis_prefix=rds1}",
        ),
        (
            "thrift.thr1.cx_destroy_local_with_active_rq",
            "thrift.cx_destroy_local_with_active_rq {envoy.thrift_prefix=thr1}",
        ),
        (
            "vhost.vh1.vcluster.vc1.upstream_rq_200",
            "vhost.vcluster.upstream_rq {envoy.response_code=200,envoy.virtual_cluster=vc1,envoy.virtual_host=vh1}",
        ),
        (
            "vhost.vh1.route.rp1.upstream_rq_completed",
            "vhost.route.upstream_rq_completed {envoy.virtual_host=vh1,envoy.route=rp1}",
        ),
        (
            "http.async-client.no_cluster",
            "http.no_cluster {envoy.http_conn_manager_prefix=async-client}",
        ),
        (
            "cluster_manager.cluster_added",
            "cluster_manager.cluster_added {}",
        ),
    ];
    for (name, want) in cases {
        assert_eq!(tags(&p, name), want, "{name}");
    }
}

#[test]
fn tag_config_errors_and_custom_tags() {
    use rvoy_stats::{Tag, TagConfig, TagSpecifier, TagValue};
    let dup = TagConfig {
        cli_tags: vec![Tag {
            name: "envoy.cluster_name".into(),
            value: "x".into(),
        }],
        ..Default::default()
    };
    assert_eq!(
        TagProducer::new(&dup).expect_err("dup").to_string(),
        "Tag name 'envoy.cluster_name' specified twice."
    );
    let unknown = TagConfig {
        use_all_default_tags: Some(false),
        stats_tags: vec![TagSpecifier {
            tag_name: "envoy.bogus".into(),
            value: TagValue::Default,
        }],
        ..Default::default()
    };
    assert_eq!(
        TagProducer::new(&unknown).expect_err("unknown").to_string(),
        "No regex specified for tag specifier and no default regex for name: 'envoy.bogus'"
    );
    // Only the named default extractor, plus an ECMAScript regex with lookahead.
    let some = TagConfig {
        use_all_default_tags: Some(false),
        stats_tags: vec![
            TagSpecifier {
                tag_name: "cipher_suite".into(),
                value: TagValue::Default,
            },
            TagSpecifier {
                tag_name: "envoy.cluster_name".into(),
                value: TagValue::Default,
            },
            TagSpecifier {
                tag_name: "la".into(),
                value: TagValue::Regex(r"^cluster\.(?=b)((b\w+)\.)".into()),
            },
        ],
        ..Default::default()
    };
    let p = TagProducer::new(&some).expect("config");
    assert_eq!(
        tags(&p, "cluster.backend.upstream_rq_200"),
        "cluster.upstream_rq_200 {envoy.cluster_name=backend,la=backend}"
    );
    assert_eq!(
        tags(&p, "cluster.c.ssl.ciphers.ECDHE-RSA"),
        "cluster.ssl.ciphers {cipher_suite=ECDHE-RSA,envoy.cluster_name=c}"
    );
}

#[test]
fn params_errors_match_envoy() {
    let err = |q: &str| StatsParams::parse(q).expect_err("error").to_string();
    assert_eq!(err("filter=("), "Invalid re2 regex: missing ): (");
    assert_eq!(
        err("histogram_buckets=bogus"),
        "usage: /stats?histogram_buckets=(cumulative|disjoint|detailed|summary|prometheusnative)\n"
    );
    assert_eq!(err("type=bogus"), "invalid &type= param");
    assert_eq!(
        err("format=bogus"),
        "usage: /stats?format=(html|active-html|json|prometheus|text)\n\n"
    );
    let p = StatsParams::parse("/stats?histogram_buckets=prometheusnative").expect("parse");
    assert_eq!(
        p.validate_for_stats(),
        Err(ParamsError::NativeOutsidePrometheus)
    );
    assert_eq!(
        StatsParams::parse("histogram_buckets=detailed")
            .expect("p")
            .validate_for_prometheus(),
        Err("unsupported prometheus histogram bucket mode")
    );
    let p = StatsParams::parse("filter=server.liv%65&filter=xyz&usedonly").expect("parse");
    assert_eq!(p.filter_string.as_deref(), Some("server.live"));
    assert!(p.used_only);
}

/// A store with counters, gauges (one hidden, one with an escaped tag
/// value), histograms (default and custom buckets, used and unused) and
/// stats without tags, for rendering tests.
fn mixed_store() -> Store {
    let store = Store::with_options(StoreOptions {
        histogram_buckets: vec![rvoy_stats::HistogramBucketRule {
            matcher: Arc::new(|n: &str| n.ends_with("custom_ms")),
            buckets: vec![1.0, 10.0, 100.0],
        }],
        ..StoreOptions::default()
    });
    for c in 0..300 {
        let scope = store.scope(&format!("cluster.c{c:03}"));
        scope.counter("upstream_cx_total").add(c);
        scope.counter("upstream_rq_200").inc();
        scope
            .gauge("membership_total", GaugeImportMode::Accumulate)
            .set(c);
        scope
            .gauge("hidden_gauge", GaugeImportMode::HiddenAccumulate)
            .inc();
        let h = scope.histogram("upstream_rq_time", HistogramUnit::Milliseconds);
        if c % 2 == 0 {
            h.record(c);
        }
        scope
            .histogram("custom_ms", HistogramUnit::Milliseconds)
            .record(5);
    }
    store
        .counter("cluster.we\\ird\"name.upstream_cx_total")
        .inc();
    store.counter("server.no_tags");
    store
        .gauge("server.live", GaugeImportMode::NeverImport)
        .set(1);
    store.merge_histograms();
    store
}

#[test]
fn streamed_prometheus_equals_one_piece() {
    let store = mixed_store();
    let snap = store.snapshot();
    for query in [
        "",
        "usedonly",
        "filter=cx_total",
        "histogram_buckets=summary",
        "hidden=include",
        "hidden=showonly&histogram_buckets=cumulative",
        "histogram_buckets=detailed",
    ] {
        let params = StatsParams::parse(query).expect("params");
        let mut whole = String::new();
        render::render_prometheus(&snap, &params, &mut whole);
        assert!(!whole.is_empty() || query.contains("showonly"), "{query}");
        for target in [1, 100, 4096, render::PROMETHEUS_CHUNK] {
            let mut r = render::PrometheusRender::new(store.snapshot(), &params);
            let mut joined = String::new();
            let mut chunks = 0;
            loop {
                let mut chunk = String::new();
                let more = r.fill(&mut chunk, target);
                assert!(more || r.is_done());
                // A chunk ends with a whole line.
                assert!(chunk.is_empty() || chunk.ends_with('\n'));
                joined.push_str(&chunk);
                chunks += 1;
                if !more {
                    break;
                }
            }
            assert_eq!(joined, whole, "query {query:?}, target {target}");
            if target == 1 {
                assert!(chunks > 300, "{query}: {chunks} chunks");
            }
        }
    }
    let params = StatsParams::parse("").expect("params");
    let mut out = String::new();
    render::render_prometheus(&snap, &params, &mut out);
    assert!(
        out.contains(
            "envoy_cluster_upstream_cx_total{envoy_cluster_name=\"we\\\\ird\\\"name\"} 1\n"
        )
    );
    assert!(out.contains("envoy_server_no_tags{} 0\n"));
    assert!(
        out.contains("envoy_cluster_custom_ms_bucket{envoy_cluster_name=\"c007\",le=\"10\"} 1\n")
    );
    assert!(!out.contains("hidden_gauge"));
}

#[test]
fn snapshots_keep_their_stats_while_registration_goes_on() {
    let store = mixed_store();
    let params = StatsParams::parse("").expect("params");
    let before = store.snapshot();
    let mut expected = String::new();
    render::render_prometheus(&before, &params, &mut expected);
    let text_before = text(&store, "");
    // Enough new stats to fill several metadata chunks and name arena
    // chunks shared with `before`, and a gauge whose import mode changes.
    for c in 0..2_000 {
        let scope = store.scope(&format!("cluster.new_{c}"));
        scope.counter("upstream_cx_total").inc();
        scope.histogram("upstream_rq_time", HistogramUnit::Milliseconds);
    }
    store.gauge(
        "cluster.c001.membership_total",
        GaugeImportMode::NeverImport,
    );
    let mut again = String::new();
    render::render_prometheus(&before, &params, &mut again);
    assert_eq!(again, expected);
    assert!(before.counter("cluster.new_5.upstream_cx_total").is_none());
    let after = store.snapshot();
    assert_eq!(
        after
            .counter("cluster.new_1999.upstream_cx_total")
            .map(|c| (c.value(), c.tag_extracted_name())),
        Some((1, "cluster.upstream_cx_total"))
    );
    assert_eq!(
        after
            .counter("cluster.c042.upstream_rq_200")
            .map(|c| c.tags().collect::<Vec<_>>()),
        Some(vec![
            ("envoy.response_code", "200"),
            ("envoy.cluster_name", "c042")
        ])
    );
    let text_after = text(&store, "");
    assert!(text_after.len() > text_before.len());
    assert!(text_after.contains("cluster.new_7.upstream_cx_total: 1\n"));
    // The same names give the same handles after all that growth.
    assert_eq!(
        store.counter("cluster.c123.upstream_cx_total"),
        store.scope("cluster.c123").counter("upstream_cx_total")
    );
    assert_eq!(store.len(), 300 * 6 + 3 + 2_000 * 2);
}
