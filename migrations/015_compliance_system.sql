-- Migration 015: compliance system
-- Funder requirements, per-application compliance checks, and an append-only audit log.
-- ROLLBACK: DROP TABLE IF EXISTS compliance_audit_log, compliance_checks, compliance_requirements;

CREATE TABLE IF NOT EXISTS compliance_requirements (
    id VARCHAR(255) PRIMARY KEY DEFAULT gen_random_uuid()::text,
    grant_id VARCHAR(255) REFERENCES grants (id) ON DELETE CASCADE,
    code VARCHAR(100) NOT NULL,
    description TEXT NOT NULL,
    severity VARCHAR(20) NOT NULL DEFAULT 'required'
        CHECK (severity IN ('required', 'recommended')),
    UNIQUE (grant_id, code)
);

CREATE TABLE IF NOT EXISTS compliance_checks (
    id VARCHAR(255) PRIMARY KEY DEFAULT gen_random_uuid()::text,
    application_id VARCHAR(255) NOT NULL REFERENCES applications (id) ON DELETE CASCADE,
    requirement_id VARCHAR(255) NOT NULL REFERENCES compliance_requirements (id),
    status VARCHAR(20) NOT NULL CHECK (status IN ('pass', 'fail', 'needs_review', 'waived')),
    checked_by VARCHAR(255),
    notes TEXT,
    checked_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP
);

CREATE INDEX IF NOT EXISTS idx_compliance_checks_application
    ON compliance_checks (application_id, requirement_id);

CREATE TABLE IF NOT EXISTS compliance_audit_log (
    id BIGSERIAL PRIMARY KEY,
    actor_id VARCHAR(255),
    entity_type VARCHAR(50) NOT NULL,
    entity_id VARCHAR(255) NOT NULL,
    action VARCHAR(50) NOT NULL,
    details JSONB NOT NULL DEFAULT '{}'::jsonb,
    created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP
);

CREATE INDEX IF NOT EXISTS idx_compliance_audit_log_entity
    ON compliance_audit_log (entity_type, entity_id, created_at);
