import json, sys
port = [11000]
def nextport():
    port[0] += 1; return port[0]
def hcm(prefix, vhosts=None):
    return {"name": "envoy.filters.network.http_connection_manager", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": prefix,
        "route_config": {"name": "rc_" + prefix.replace('.', '_'), "virtual_hosts": vhosts or [{"name": "vh", "domains": ["*"], "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "backend"}}]}]},
        "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}]}}
def listener(name, filters, addr="127.0.0.1", stat_prefix=None, lfilters=None):
    l = {"name": name, "address": {"socket_address": {"address": addr, "port_value": nextport()}}, "filter_chains": [{"filters": filters}]}
    if stat_prefix: l["stat_prefix"] = stat_prefix
    if lfilters: l["listener_filters"] = lfilters
    return l
def cluster(name, weight=None):
    ep = {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 18080}}}}
    if weight: ep["load_balancing_weight"] = weight
    return {"name": name, "type": "STATIC", "connect_timeout": "1s", "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [ep]}]}}
clusters = [cluster("backend", 1000000)] + [cluster(n) for n in [
    "backend-2", "backend_3", "c.grpc.svc.meth", "hc.health_check.name.hcn", "e.ext_authz.eapfx",
    "http_local_rate_limit", "rbac", "t.ssl.certificate.cert1", "d.ssl.ciphers.AES128", "u.user_agent.ua",
    "10.0.0.1_80", "CamelCase", "w.worker_3", "q.rq_200x", "x.upstream"]]
vh = [{"name": "vh1", "domains": ["*"], "virtual_clusters": [{"name": "vc1", "headers": [{"name": ":path", "string_match": {"prefix": "/vc"}}]}],
       "routes": [{"match": {"prefix": "/"}, "stat_prefix": "rp1", "route": {"cluster": "backend"}}]}]
listeners = [
    listener("l_main", [hcm("ingress_http", vh)]),
    listener("l_ua", [hcm("p.user_agent.ua")]),
    listener("l_fault", [hcm("p2.fault.dc")]),
    listener("l_dyn_op", [hcm("p3.dynamodb.operation.GetItem")]),
    listener("l_dyn_tbl", [hcm("p4.dynamodb.table.tbl")]),
    listener("l_rds", [hcm("p5.rds.rcname")]),
    listener("l_srds", [hcm("p6.scoped_rds.srcname")]),
    listener("l_rbac", [hcm("p7.rbac.rules")]),
    listener("l_extauthz", [hcm("p8.ext_authz.eap")]),
    listener("l_statpfx", [hcm("p9")], stat_prefix="mylistener"),
    listener("l_v6", [hcm("p10")], addr="::1"),
    listener("l_tcp", [{"name": "envoy.filters.network.tcp_proxy", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy", "stat_prefix": "tp", "cluster": "backend"}}]),
    listener("l_mongo", [{"name": "envoy.filters.network.mongo_proxy", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.network.mongo_proxy.v3.MongoProxy", "stat_prefix": "m.collection.col.callsite.cs.query"}},
                          {"name": "envoy.filters.network.tcp_proxy", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy", "stat_prefix": "tp2", "cluster": "backend"}}]),
    listener("l_mongo2", [{"name": "envoy.filters.network.mongo_proxy", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.network.mongo_proxy.v3.MongoProxy", "stat_prefix": "m2.cmd.find"}},
                          {"name": "envoy.filters.network.tcp_proxy", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy", "stat_prefix": "tp3", "cluster": "backend"}}]),
    listener("l_connlimit", [{"name": "envoy.filters.network.connection_limit", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.network.connection_limit.v3.ConnectionLimit", "stat_prefix": "cl", "max_connections": 10}},
                          {"name": "envoy.filters.network.tcp_proxy", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy", "stat_prefix": "tp4", "cluster": "backend"}}]),
    listener("l_lrl", [{"name": "envoy.filters.network.local_ratelimit", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.network.local_ratelimit.v3.LocalRateLimit", "stat_prefix": "lrl", "token_bucket": {"max_tokens": 10, "fill_interval": "1s"}}},
                          {"name": "envoy.filters.network.tcp_proxy", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy", "stat_prefix": "tp5", "cluster": "backend"}}]),
    listener("l_pp", [{"name": "envoy.filters.network.tcp_proxy", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy", "stat_prefix": "tp6", "cluster": "backend"}}],
             lfilters=[{"name": "envoy.filters.listener.proxy_protocol", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.listener.proxy_protocol.v3.ProxyProtocol", "stat_prefix": "ppx"}}]),
    listener("l_redis", [{"name": "envoy.filters.network.redis_proxy", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.network.redis_proxy.v3.RedisProxy", "stat_prefix": "rds1", "settings": {"op_timeout": "1s"}, "prefix_routes": {"catch_all_route": {"cluster": "backend"}}}}]),
    listener("l_thrift", [{"name": "envoy.filters.network.thrift_proxy", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.network.thrift_proxy.v3.ThriftProxy", "stat_prefix": "thr1", "route_config": {"name": "r", "routes": [{"match": {"method_name": ""}, "route": {"cluster": "backend"}}]}}}]),
]
extra = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}
cfg = {"admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 19902}}},
       "stats_flush_on_admin": True,
       "static_resources": {"listeners": listeners, "clusters": clusters}}
cfg.update(extra)
print(json.dumps(cfg, indent=1))
