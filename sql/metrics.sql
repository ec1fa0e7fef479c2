-- whatsapp_channel: the metrics view. What GET /metrics serves (whatsapp_channel.metrics_address),
-- as rows: one per sample, labels as jsonb. Counters start at zero when the server starts.

CREATE VIEW wa_metrics AS
SELECT metric, labels, value FROM _wa_metrics();

COMMENT ON VIEW wa_metrics IS 'The samples GET /metrics serves (Prometheus names), one row each; counters count since the server started.';
