-- Migration 013: document upload analysis
-- Uploaded supporting documents, their AI analysis, and the fields extracted from them.
-- ROLLBACK: DROP TABLE IF EXISTS document_extracted_fields, ai_document_analyses, documents;

CREATE TABLE IF NOT EXISTS documents (
    id VARCHAR(255) PRIMARY KEY DEFAULT gen_random_uuid()::text,
    owner_id VARCHAR(255) NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    application_id VARCHAR(255) REFERENCES applications (id) ON DELETE SET NULL,
    filename VARCHAR(500) NOT NULL,
    content_type VARCHAR(100) NOT NULL,
    size_bytes BIGINT NOT NULL CHECK (size_bytes >= 0),
    storage_key VARCHAR(1000) NOT NULL UNIQUE,
    sha256 CHAR(64) NOT NULL,
    uploaded_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP
);

CREATE INDEX IF NOT EXISTS idx_documents_application_id ON documents (application_id);

CREATE TABLE IF NOT EXISTS ai_document_analyses (
    id VARCHAR(255) PRIMARY KEY DEFAULT gen_random_uuid()::text,
    document_id VARCHAR(255) NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
    status VARCHAR(20) NOT NULL DEFAULT 'queued'
        CHECK (status IN ('queued', 'running', 'done', 'failed')),
    document_type VARCHAR(100),
    summary TEXT,
    model VARCHAR(100),
    error TEXT,
    started_at TIMESTAMP,
    finished_at TIMESTAMP
);

CREATE INDEX IF NOT EXISTS idx_ai_document_analyses_pending
    ON ai_document_analyses (status) WHERE status IN ('queued', 'running');

CREATE TABLE IF NOT EXISTS document_extracted_fields (
    analysis_id VARCHAR(255) NOT NULL REFERENCES ai_document_analyses (id) ON DELETE CASCADE,
    field_name VARCHAR(100) NOT NULL,
    field_value TEXT,
    confidence DECIMAL(5, 4),
    PRIMARY KEY (analysis_id, field_name)
);
