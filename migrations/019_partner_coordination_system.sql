-- Migration 019: partner coordination system
-- Partner organizations on an application, their invitations, and shared tasks.
-- ROLLBACK: DROP TABLE IF EXISTS partner_tasks, partner_invitations, application_partners;

CREATE TABLE IF NOT EXISTS application_partners (
    id VARCHAR(255) PRIMARY KEY DEFAULT gen_random_uuid()::text,
    application_id VARCHAR(255) NOT NULL REFERENCES applications (id) ON DELETE CASCADE,
    organization_id VARCHAR(255) NOT NULL REFERENCES organizations (id),
    partner_role VARCHAR(30) NOT NULL DEFAULT 'collaborator'
        CHECK (partner_role IN ('lead', 'collaborator', 'subrecipient', 'fiscal_sponsor')),
    budget_share DECIMAL(5, 4),
    joined_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
    UNIQUE (application_id, organization_id)
);

CREATE TABLE IF NOT EXISTS partner_invitations (
    id VARCHAR(255) PRIMARY KEY DEFAULT gen_random_uuid()::text,
    application_id VARCHAR(255) NOT NULL REFERENCES applications (id) ON DELETE CASCADE,
    invited_email VARCHAR(255) NOT NULL,
    invited_by VARCHAR(255) NOT NULL REFERENCES users (id),
    token_hash CHAR(64) NOT NULL UNIQUE,
    status VARCHAR(20) NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'accepted', 'declined', 'expired')),
    expires_at TIMESTAMP NOT NULL,
    created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP
);

CREATE TABLE IF NOT EXISTS partner_tasks (
    id VARCHAR(255) PRIMARY KEY DEFAULT gen_random_uuid()::text,
    partner_id VARCHAR(255) NOT NULL REFERENCES application_partners (id) ON DELETE CASCADE,
    title VARCHAR(255) NOT NULL,
    assignee_id VARCHAR(255) REFERENCES users (id) ON DELETE SET NULL,
    due_date DATE,
    done BOOLEAN DEFAULT false,
    created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP
);

CREATE INDEX IF NOT EXISTS idx_partner_tasks_open
    ON partner_tasks (partner_id, due_date) WHERE NOT done;
