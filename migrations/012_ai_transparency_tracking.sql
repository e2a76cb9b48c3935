-- Migration 012: AI transparency tracking
-- Every AI call that touched a user's content, why it was made, and the user's consent.
-- ROLLBACK: DROP TABLE IF EXISTS ai_decision_explanations, ai_transparency_logs, ai_user_consents;

CREATE TABLE IF NOT EXISTS ai_user_consents (
    user_id VARCHAR(255) NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    purpose VARCHAR(50) NOT NULL
        CHECK (purpose IN ('writing_assistance', 'document_analysis', 'predictions', 'training')),
    granted BOOLEAN NOT NULL,
    recorded_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
    PRIMARY KEY (user_id, purpose)
);

CREATE TABLE IF NOT EXISTS ai_transparency_logs (
    id VARCHAR(255) PRIMARY KEY DEFAULT gen_random_uuid()::text,
    user_id VARCHAR(255) REFERENCES users (id) ON DELETE SET NULL,
    organization_id VARCHAR(255),
    feature VARCHAR(100) NOT NULL,
    provider VARCHAR(50) NOT NULL,
    model VARCHAR(100) NOT NULL,
    input_summary TEXT,
    output_summary TEXT,
    prompt_tokens INTEGER,
    completion_tokens INTEGER,
    created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP
);

CREATE INDEX IF NOT EXISTS idx_ai_transparency_logs_user_created
    ON ai_transparency_logs (user_id, created_at DESC);

CREATE TABLE IF NOT EXISTS ai_decision_explanations (
    id VARCHAR(255) PRIMARY KEY DEFAULT gen_random_uuid()::text,
    log_id VARCHAR(255) NOT NULL REFERENCES ai_transparency_logs (id) ON DELETE CASCADE,
    explanation TEXT NOT NULL,
    confidence DECIMAL(5, 4),
    sources JSONB NOT NULL DEFAULT '[]'::jsonb,
    created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP
);
