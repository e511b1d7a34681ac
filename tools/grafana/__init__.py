"""stationd's Grafana dashboards, generated from one definition for VictoriaMetrics
(PromQL) and InfluxDB (InfluxQL): `python -m tools.grafana` rewrites
config/grafana/dashboards/{victoriametrics,influxdb}/."""
