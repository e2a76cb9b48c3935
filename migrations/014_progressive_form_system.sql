-- Migration 014: progressive form system
-- Multi-step application forms: templates, their steps, and each applicant's progress.
-- ROLLBACK: DROP TABLE IF EXISTS form_field_responses, form_progress, form_steps, form_templates;

CREATE TABLE IF NOT EXISTS form_templates (
    id VARCHAR(255) PRIMARY KEY DEFAULT gen_random_uuid()::text,
    grant_id VARCHAR(255) REFERENCES grants (id) ON DELETE CASCADE,
    name VARCHAR(255) NOT NULL,
    version INTEGER NOT NULL DEFAULT 1,
    is_published BOOLEAN DEFAULT false,
    created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP
);

CREATE TABLE IF NOT EXISTS form_steps (
    id VARCHAR(255) PRIMARY KEY DEFAULT gen_random_uuid()::text,
    template_id VARCHAR(255) NOT NULL REFERENCES form_templates (id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    title VARCHAR(255) NOT NULL,
    fields JSONB NOT NULL DEFAULT '[]'::jsonb,
    show_if JSONB,
    UNIQUE (template_id, position)
);

CREATE TABLE IF NOT EXISTS form_progress (
    application_id VARCHAR(255) NOT NULL REFERENCES applications (id) ON DELETE CASCADE,
    template_id VARCHAR(255) NOT NULL REFERENCES form_templates (id),
    current_step INTEGER NOT NULL DEFAULT 1,
    completed_steps INTEGER[] NOT NULL DEFAULT '{}',
    updated_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
    PRIMARY KEY (application_id, template_id)
);

CREATE TABLE IF NOT EXISTS form_field_responses (
    application_id VARCHAR(255) NOT NULL REFERENCES applications (id) ON DELETE CASCADE,
    step_id VARCHAR(255) NOT NULL REFERENCES form_steps (id) ON DELETE CASCADE,
    field_key VARCHAR(100) NOT NULL,
    value JSONB,
    updated_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
    PRIMARY KEY (application_id, step_id, field_key)
);
