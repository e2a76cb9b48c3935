-- migrate: no-transaction
-- Migration 022: AI monitoring system
-- Metrics, alert rules and incidents for the AI features. Runs outside a transaction,
-- statement by statement, because its indexes on the busy usage and metrics tables are
-- built CONCURRENTLY (no write lock). Every statement is safe to repeat if a run stops
-- half-way; an index left INVALID by an interrupted build must be dropped by hand first.
-- ROLLBACK: DROP TABLE IF EXISTS ai_monitoring_incidents, ai_monitoring_alert_rules, ai_monitoring_metrics;
-- ROLLBACK: DROP INDEX CONCURRENTLY IF EXISTS idx_ai_cost_usage_model_created;

CREATE TABLE IF NOT EXISTS ai_monitoring_metrics (
    id BIGSERIAL PRIMARY KEY,
    metric VARCHAR(100) NOT NULL,
    model VARCHAR(100),
    endpoint_id VARCHAR(255),
    value DOUBLE PRECISION NOT NULL,
    labels JSONB NOT NULL DEFAULT '{}'::jsonb,
    recorded_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP
);

CREATE TABLE IF NOT EXISTS ai_monitoring_alert_rules (
    id VARCHAR(255) PRIMARY KEY,
    metric VARCHAR(100) NOT NULL,
    comparison VARCHAR(2) NOT NULL CHECK (comparison IN ('>', '>=', '<', '<=')),
    threshold DOUBLE PRECISION NOT NULL,
    window_seconds INTEGER NOT NULL DEFAULT 300,
    severity VARCHAR(20) NOT NULL DEFAULT 'warning' CHECK (severity IN ('info', 'warning', 'critical')),
    is_active BOOLEAN DEFAULT true
);

CREATE TABLE IF NOT EXISTS ai_monitoring_incidents (
    id VARCHAR(255) PRIMARY KEY DEFAULT gen_random_uuid()::text,
    rule_id VARCHAR(255) REFERENCES ai_monitoring_alert_rules (id) ON DELETE SET NULL,
    summary TEXT NOT NULL,
    opened_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    resolved_at TIMESTAMP
);

CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_ai_monitoring_metrics_metric_recorded
    ON ai_monitoring_metrics (metric, recorded_at DESC);

CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_ai_cost_usage_model_created
    ON ai_cost_usage (model, created_at);

INSERT INTO ai_monitoring_alert_rules (id, metric, comparison, threshold, severity) VALUES
    ('ai-error-rate-high', 'error_rate', '>', 0.05, 'critical'),
    ('ai-p95-latency-high', 'latency_p95_ms', '>', 8000, 'warning')
ON CONFLICT (id) DO NOTHING;
