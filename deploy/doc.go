// Package deploy holds the operator files for running redial under
// systemd with Prometheus and Grafana (redial.service, redial.env.example,
// prometheus.yml, grafana-dashboard.json); its test checks them against a
// real node.
package deploy
