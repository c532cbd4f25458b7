#!/usr/bin/env bats
# Static checks of contrib/: the Prometheus configuration and rules, and the
# Grafana dashboard and provisioning. No daemon needed; test/prometheus.bats
# runs the same expressions against a live submitd.

load helpers/common

PROM=contrib/prometheus
DASH=contrib/grafana/dashboards/submitd.json

# Every metric family of the /metrics contract, as docs/METRICS.md lists them.
FAMILIES=$(sd_doc_families)


setup() {
	cd "$BATS_TEST_DIRNAME/.." || return 1
	command -v promtool >/dev/null || skip "promtool not installed (Debian package prometheus)"
}

need_yaml() {
	python3 -c 'import yaml' 2>/dev/null || skip "python3-yaml not installed"
}

# Dashboard expressions, one per line, with Grafana's variables replaced by
# values valid in PromQL. An unknown variable is left in and fails the parse.
dashboard_exprs() {
	jq -r '[.. | objects | select(has("expr")) | .expr] | .[]' "$DASH" |
		sed -e 's/\${\{0,1\}__rate_interval}\{0,1\}/1m/g' \
			-e 's/\${\{0,1\}__interval}\{0,1\}/15s/g' \
			-e 's/\${\{0,1\}__range}\{0,1\}/1h/g' \
			-e 's/\${\{0,1\}job}\{0,1\}/submitd/g' \
			-e 's/\${\{0,1\}instance}\{0,1\}/.*/g' \
			-e 's/\${\{0,1\}node}\{0,1\}/.*/g'
}

# rules_file FILE GROUP: the PromQL expressions on stdin, one a line, as the
# recording rules GROUP:expr_1, GROUP:expr_2... of one group in FILE, for
# promtool check rules; prints how many.
rules_file() {
	local n=0 e
	printf 'groups:\n  - name: %s\n    rules:\n' "$2" >"$1"
	while IFS= read -r e; do
		n=$((n + 1))
		printf '      - record: %s:expr_%d\n        expr: %s\n' "$2" "$n" "$(jq -Rn --arg e "$e" '$e')" >>"$1"
	done
	echo "$n"
}

@test "contrib: promtool check config accepts prometheus.yml and finds the rules" {
	run promtool check config "$PROM/prometheus.yml"
	assert_success
	assert_output --partial "SUCCESS: 1 rule files found"
	assert_output --partial "is valid prometheus config file syntax"
}

@test "contrib: prometheus.yml scrapes submitd and node_exporter every 5 s" {
	need_yaml
	run python3 - "$PROM/prometheus.yml" <<-'PY'
		import sys, yaml
		c = yaml.safe_load(open(sys.argv[1]))
		assert c["global"]["scrape_interval"] == "5s", c["global"]
		jobs = {j["job_name"]: j for j in c["scrape_configs"]}
		assert jobs["submitd"]["static_configs"][0]["targets"] == ["127.0.0.1:8889"], jobs
		assert jobs["node"]["static_configs"][0]["targets"] == ["127.0.0.1:9100"], jobs
		assert c["rule_files"] == ["submitd.rules.yml"], c["rule_files"]
	PY
	assert_success
}

@test "contrib: promtool check rules passes and the alerts exist" {
	run promtool check rules "$PROM/submitd.rules.yml"
	assert_success
	assert_output --partial "SUCCESS: 39 rules found"
	for a in SubmitdDown SubmitdWorkersMissing SubmitdReloadFailed SubmitdProtocolErrorsRising SubmitdWorkerRestarts \
		SubmitdSpoolNearlyFull SubmitdSpoolFsyncSlow SubmitdSpoolFailures SubmitdSubmitsNotStored \
		SubmitdNatsDisconnected SubmitdNatsLagGrowing SubmitdNatsOldestUnforwarded SubmitdTLSCertificateExpiresSoon SubmitdAuthFailures; do
		grep -q "^ *- alert: $a\$" "$PROM/submitd.rules.yml" || fail "alert $a missing"
	done
}

@test "contrib: rule unit tests (promtool test rules) pass" {
	run promtool test rules "$PROM/submitd.rules.test.yml"
	assert_success
	assert_output --partial SUCCESS
}

@test "contrib: dashboard is valid JSON with a fixed uid and a prometheus datasource variable" {
	run jq -e . "$DASH"
	assert_success
	run jq -r .uid "$DASH"
	assert_output "submitd-overview"
	run jq -r '.templating.list[] | select(.name == "datasource") | "\(.type) \(.query)"' "$DASH"
	assert_output "datasource prometheus"
}

@test "contrib: every panel and target uses the datasource variable" {
	# Rows carry no queries; everything else must point at ${datasource}.
	local panels='[.. | objects | select(has("gridPos") and .type != "row")]'
	run jq -r "$panels | length" "$DASH"
	[ "$output" -ge 15 ]
	run jq -r "$panels[] | select(.datasource.uid != \"\${datasource}\" or .datasource.type != \"prometheus\") | .title" "$DASH"
	assert_output ""
	run jq -r "$panels[] | select(any(.targets[]; .datasource.uid != \"\${datasource}\")) | .title" "$DASH"
	assert_output ""
	run jq -r "$panels[] | select((.targets // []) | length == 0) | .title" "$DASH"
	assert_output ""
	# Template variables that query Prometheus use it too.
	run jq -r '.templating.list[] | select(.type == "query") | select(.datasource.uid != "${datasource}") | .name' "$DASH"
	assert_output ""
}

@test "contrib: panel ids are unique and panels do not overlap" {
	run python3 - "$DASH" <<-'PY'
		import json, sys
		d = json.load(open(sys.argv[1]))
		ps = d["panels"]
		ids = [p["id"] for p in ps]
		assert len(ids) == len(set(ids)), ids
		cells = {}
		for p in ps:
		    g = p["gridPos"]
		    assert 0 <= g["x"] and g["x"] + g["w"] <= 24, p["title"]
		    for x in range(g["x"], g["x"] + g["w"]):
		        for y in range(g["y"], g["y"] + g["h"]):
		            assert (x, y) not in cells, (p["title"], cells.get((x, y)))
		            cells[(x, y)] = p["title"]
	PY
	assert_success
}

@test "contrib: every dashboard expression parses (promtool check rules)" {
	local rules="$BATS_TEST_TMPDIR/dash.rules.yml" n
	n=$(dashboard_exprs | rules_file "$rules" dashboard)
	[ "$n" -ge 30 ]
	run grep -c '\$' "$rules"
	assert_output 0
	run promtool check rules "$rules"
	assert_success
	assert_output --partial "SUCCESS: $n rules found"
}

@test "contrib: the variable queries of the dashboard parse" {
	# label_values(SELECTOR, LABEL): the selector must be valid PromQL.
	local rules="$BATS_TEST_TMPDIR/vars.rules.yml" n
	n=$(jq -r '.templating.list[] | select(.type == "query") | .definition
		| capture("^label_values\\((?<sel>.*), *[a-z_]+\\)$").sel' "$DASH" |
		sed 's/\$job/submitd/' | rules_file "$rules" vars)
	[ "$n" -eq 3 ]
	run promtool check rules "$rules"
	assert_success
}

@test "contrib: dashboard and rules use only metrics of the contract, and the dashboard shows all of them" {
	local used fam
	[ "$(wc -w <<<"$FAMILIES")" -ge 20 ]
	used=$( { dashboard_exprs; cat "$PROM/submitd.rules.yml"; } |
		grep -oP '\b(submitd|process)_[a-z_]+(?![a-z_:])' | sed 's/_\(bucket\|sum\|count\)$//' | sort -u)
	for fam in $used; do
		grep -qw -- "$fam" <<<"$FAMILIES" || fail "unknown metric $fam"
	done
	for fam in $FAMILIES; do
		dashboard_exprs | grep -q -- "$fam" || fail "$fam has no panel"
	done
}

@test "contrib: every rate over a dashboard range uses \$__rate_interval" {
	run bash -c "jq -r '[.. | objects | select(has(\"expr\")) | .expr] | .[]' '$DASH' \
		| grep -o '\\(rate\\|increase\\|changes\\)([^[]*\\[[^]]*\\]' | grep -v '\\[\$__rate_interval\\]'"
	assert_output ""
}

@test "contrib: provisioning matches the compose file" {
	need_yaml
	run python3 - <<-'PY'
		import yaml
		ds = yaml.safe_load(open("contrib/grafana/provisioning/datasources/prometheus.yml"))["datasources"][0]
		assert ds["type"] == "prometheus" and ds["url"] == "http://127.0.0.1:9090", ds
		assert ds["jsonData"]["timeInterval"] == "5s", ds
		prov = yaml.safe_load(open("contrib/grafana/provisioning/dashboards/submitd.yml"))["providers"][0]
		path = prov["options"]["path"]
		c = yaml.safe_load(open("contrib/docker-compose.yml"))
		svc = c["services"]
		assert set(svc) == {"prometheus", "grafana", "node-exporter", "nats"}, svc
		for s in svc.values():
		    assert s["network_mode"] == "host", s
		mounts = {v.split(":")[1]: v.split(":")[0] for v in svc["grafana"]["volumes"]}
		assert mounts[path] == "./grafana/dashboards", mounts
		assert mounts["/etc/grafana/provisioning/datasources"] == "./grafana/provisioning/datasources"
		assert mounts["/etc/grafana/provisioning/dashboards"] == "./grafana/provisioning/dashboards"
		pm = {v.split(":")[1]: v.split(":")[0] for v in svc["prometheus"]["volumes"]}
		assert pm["/etc/prometheus"] == "./prometheus", pm
		assert "--config.file=/etc/prometheus/prometheus.yml" in svc["prometheus"]["command"]
	PY
	assert_success
}

@test "contrib: the compose file's NATS service has JetStream, and submitd forwards to it" {
	need_yaml
	local d=$BATS_TEST_TMPDIR
	run python3 - "$d" <<-'PY'
		import re, sys, yaml
		d = sys.argv[1]
		nats = yaml.safe_load(open("contrib/docker-compose.yml"))["services"]["nats"]
		assert nats["image"].startswith("nats:"), nats
		assert nats["network_mode"] == "host", nats
		cmd = nats["command"]
		assert "-js" in cmd and "--port=4222" in cmd and "--addr=127.0.0.1" in cmd, cmd
		assert "--store_dir=/data" in cmd and "nats-data:/data" in nats["volumes"], nats
		# The fragment, put in place of the same options of etc/submitd.conf.
		frag = {}
		for l in open("contrib/nats/submitd.conf"):
		    l = l.strip()
		    if l and not l.startswith("#"):
		        k, v = l.split("=", 1)
		        frag[k.strip()] = v.strip()
		assert frag["nats_servers"] == '{"nats://127.0.0.1:4222"}', frag
		out, seen = [], set()
		for l in open("etc/submitd.conf"):
		    m = re.match(r"^(\w+)\s*=", l)
		    if m and m.group(1) in frag:
		        l = "%s = %s\n" % (m.group(1), frag[m.group(1)])
		        seen.add(m.group(1))
		    out.append(l.replace("/var/lib/submitd/spool", d + "/spool"))
		assert seen == set(frag), set(frag) - seen
		open(d + "/submitd.conf", "w").writelines(out)
	PY
	assert_success
	run "$SD_BIN" -T -q -c "$d/submitd.conf"
	assert_success
	assert_line 'nats_servers = {"nats://127.0.0.1:4222"}'
	assert_line 'nats_create_stream = true'
}
