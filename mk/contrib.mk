# Checks of the monitoring kit in contrib/ (Prometheus config and rules,
# Grafana dashboard). `make contrib-check` needs promtool (Debian: prometheus)
# and jq; the full checks are test/contrib.bats and test/prometheus.bats.

PROMTOOL ?= promtool
CONTRIB_DASHBOARDS := $(wildcard contrib/grafana/dashboards/*.json)

.PHONY: contrib-check
contrib-check:
	$(PROMTOOL) check config contrib/prometheus/prometheus.yml
	$(PROMTOOL) check rules contrib/prometheus/submitd.rules.yml
	$(PROMTOOL) test rules contrib/prometheus/submitd.rules.test.yml
	@for f in $(CONTRIB_DASHBOARDS); do \
		jq -e '.uid and (.panels | length > 0)' "$$f" >/dev/null || { echo "$$f: invalid dashboard" >&2; exit 1; }; \
		echo "$$f: valid JSON"; \
	done
