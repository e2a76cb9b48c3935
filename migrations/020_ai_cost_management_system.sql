-- Migration 020: AI cost management system
-- Spending limits per organization, metered usage, alerts, and the price list behind them.
-- Self-contained (no references to earlier tables): it is the migration whose absence
-- caused 'relation "ai_cost_thresholds" does not exist', and must apply on its own.
-- ROLLBACK: DROP TABLE IF EXISTS ai_cost_alerts, ai_cost_usage, ai_cost_thresholds, ai_model_pricing;

CREATE TABLE IF NOT EXISTS ai_cost_thresholds (
    id VARCHAR(255) PRIMARY KEY,
    organization_id VARCHAR(255) NOT NULL,
    period VARCHAR(20) NOT NULL DEFAULT 'monthly' CHECK (period IN ('daily', 'monthly')),
    limit_amount DECIMAL(10, 4) NOT NULL,
    alert_at_percent INTEGER NOT NULL DEFAULT 80 CHECK (alert_at_percent BETWEEN 1 AND 100),
    hard_stop BOOLEAN DEFAULT false,
    is_active BOOLEAN DEFAULT true,
    created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP
);

-- One active limit per organization and period; history stays as inactive rows.
CREATE UNIQUE INDEX IF NOT EXISTS uq_ai_cost_thresholds_active
    ON ai_cost_thresholds (organization_id, period) WHERE is_active;

CREATE TABLE IF NOT EXISTS ai_model_pricing (
    model VARCHAR(100) PRIMARY KEY,
    provider VARCHAR(50) NOT NULL,
    input_cost_per_1k DECIMAL(10, 6) NOT NULL,
    output_cost_per_1k DECIMAL(10, 6) NOT NULL,
    effective_from DATE NOT NULL DEFAULT CURRENT_DATE
);

CREATE TABLE IF NOT EXISTS ai_cost_usage (
    id BIGSERIAL PRIMARY KEY,
    organization_id VARCHAR(255) NOT NULL,
    user_id VARCHAR(255),
    feature VARCHAR(100) NOT NULL,
    model VARCHAR(100) NOT NULL,
    prompt_tokens INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    cost DECIMAL(10, 4) NOT NULL,
    created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP
);

CREATE INDEX IF NOT EXISTS idx_ai_cost_usage_org_created
    ON ai_cost_usage (organization_id, created_at);

CREATE TABLE IF NOT EXISTS ai_cost_alerts (
    id VARCHAR(255) PRIMARY KEY DEFAULT gen_random_uuid()::text,
    threshold_id VARCHAR(255) NOT NULL REFERENCES ai_cost_thresholds (id) ON DELETE CASCADE,
    period_start DATE NOT NULL,
    spent_amount DECIMAL(10, 4) NOT NULL,
    percent_used INTEGER NOT NULL,
    acknowledged_at TIMESTAMP,
    created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
    UNIQUE (threshold_id, period_start, percent_used)
);

INSERT INTO ai_model_pricing (model, provider, input_cost_per_1k, output_cost_per_1k) VALUES
    ('gpt-4o', 'openai', 0.002500, 0.010000),
    ('gpt-4o-mini', 'openai', 0.000150, 0.000600),
    ('text-embedding-3-small', 'openai', 0.000020, 0.000000)
ON CONFLICT (model) DO NOTHING;
