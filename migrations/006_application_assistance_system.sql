-- Migration 006: application assistance system
-- Grant applications, their sections, and AI writing suggestions for each section.
-- applications.grant_id gets its foreign key in 007, once grants exists.
-- ROLLBACK: DROP TABLE IF EXISTS ai_application_suggestions, application_sections, applications;

CREATE TABLE IF NOT EXISTS applications (
    id VARCHAR(255) PRIMARY KEY DEFAULT gen_random_uuid()::text,
    user_id VARCHAR(255) NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    organization_id VARCHAR(255),
    grant_id VARCHAR(255),
    title VARCHAR(500) NOT NULL,
    status VARCHAR(30) NOT NULL DEFAULT 'draft'
        CHECK (status IN ('draft', 'in_review', 'submitted', 'awarded', 'rejected', 'withdrawn')),
    submitted_at TIMESTAMP,
    created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
    updated_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP
);

CREATE INDEX IF NOT EXISTS idx_applications_user_id ON applications (user_id);
CREATE INDEX IF NOT EXISTS idx_applications_status ON applications (status);

CREATE TABLE IF NOT EXISTS application_sections (
    id VARCHAR(255) PRIMARY KEY DEFAULT gen_random_uuid()::text,
    application_id VARCHAR(255) NOT NULL REFERENCES applications (id) ON DELETE CASCADE,
    section_key VARCHAR(100) NOT NULL,
    content TEXT NOT NULL DEFAULT '',
    word_limit INTEGER,
    position INTEGER NOT NULL DEFAULT 0,
    updated_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
    UNIQUE (application_id, section_key)
);

CREATE TABLE IF NOT EXISTS ai_application_suggestions (
    id VARCHAR(255) PRIMARY KEY DEFAULT gen_random_uuid()::text,
    section_id VARCHAR(255) NOT NULL REFERENCES application_sections (id) ON DELETE CASCADE,
    suggestion_type VARCHAR(30) NOT NULL
        CHECK (suggestion_type IN ('rewrite', 'expand', 'shorten', 'clarify', 'evidence')),
    suggested_text TEXT NOT NULL,
    model VARCHAR(100) NOT NULL,
    accepted BOOLEAN,
    created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP
);

CREATE INDEX IF NOT EXISTS idx_ai_application_suggestions_section_id
    ON ai_application_suggestions (section_id);
