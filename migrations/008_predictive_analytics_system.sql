-- Migration 008: predictive analytics system
-- Success-probability predictions for applications and the models that produced them.
-- ROLLBACK: DROP TABLE IF EXISTS funding_trend_snapshots, ai_success_predictions, ai_prediction_models;

CREATE TABLE IF NOT EXISTS ai_prediction_models (
    id VARCHAR(255) PRIMARY KEY,
    name VARCHAR(100) NOT NULL,
    version VARCHAR(50) NOT NULL,
    trained_at TIMESTAMP,
    validation_auc DECIMAL(5, 4),
    is_active BOOLEAN DEFAULT false,
    created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
    UNIQUE (name, version)
);

CREATE TABLE IF NOT EXISTS ai_success_predictions (
    id VARCHAR(255) PRIMARY KEY DEFAULT gen_random_uuid()::text,
    application_id VARCHAR(255) NOT NULL REFERENCES applications (id) ON DELETE CASCADE,
    model_id VARCHAR(255) NOT NULL REFERENCES ai_prediction_models (id),
    probability DECIMAL(5, 4) NOT NULL CHECK (probability BETWEEN 0 AND 1),
    factors JSONB NOT NULL DEFAULT '{}'::jsonb,
    created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP
);

CREATE INDEX IF NOT EXISTS idx_ai_success_predictions_application
    ON ai_success_predictions (application_id, created_at DESC);

CREATE TABLE IF NOT EXISTS funding_trend_snapshots (
    id VARCHAR(255) PRIMARY KEY DEFAULT gen_random_uuid()::text,
    funder VARCHAR(255) NOT NULL,
    category VARCHAR(100),
    period_start DATE NOT NULL,
    awards_count INTEGER NOT NULL DEFAULT 0,
    total_awarded DECIMAL(16, 2) NOT NULL DEFAULT 0,
    success_rate DECIMAL(5, 4),
    UNIQUE (funder, category, period_start)
);
