-- Migration 007: grant monitoring system
-- Grant opportunities, users' watchlists, and alerts about deadlines and changes.
-- ROLLBACK: ALTER TABLE applications DROP CONSTRAINT IF EXISTS fk_applications_grant;
-- ROLLBACK: DROP TABLE IF EXISTS grant_alerts, grant_watchlists, grants;

CREATE TABLE IF NOT EXISTS grants (
    id VARCHAR(255) PRIMARY KEY DEFAULT gen_random_uuid()::text,
    source VARCHAR(100) NOT NULL,
    external_id VARCHAR(255),
    title VARCHAR(500) NOT NULL,
    funder VARCHAR(255) NOT NULL,
    description TEXT,
    amount DECIMAL(14, 2),
    currency CHAR(3) NOT NULL DEFAULT 'USD',
    deadline TIMESTAMP,
    status VARCHAR(20) NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'closed', 'archived')),
    last_checked_at TIMESTAMP,
    created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
    UNIQUE (source, external_id)
);

CREATE INDEX IF NOT EXISTS idx_grants_deadline ON grants (deadline) WHERE status = 'open';

CREATE TABLE IF NOT EXISTS grant_watchlists (
    user_id VARCHAR(255) NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    grant_id VARCHAR(255) NOT NULL REFERENCES grants (id) ON DELETE CASCADE,
    notify_days_before INTEGER NOT NULL DEFAULT 14,
    created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
    PRIMARY KEY (user_id, grant_id)
);

CREATE TABLE IF NOT EXISTS grant_alerts (
    id VARCHAR(255) PRIMARY KEY DEFAULT gen_random_uuid()::text,
    grant_id VARCHAR(255) NOT NULL REFERENCES grants (id) ON DELETE CASCADE,
    user_id VARCHAR(255) NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    alert_type VARCHAR(30) NOT NULL
        CHECK (alert_type IN ('deadline', 'changed', 'new_match', 'closed')),
    message TEXT NOT NULL,
    sent_at TIMESTAMP,
    created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP
);

CREATE INDEX IF NOT EXISTS idx_grant_alerts_unsent ON grant_alerts (created_at) WHERE sent_at IS NULL;

-- NOT VALID: new and changed rows are checked at once, without scanning applications
-- under a lock while the serving release writes to it. A later migration validates it:
-- ALTER TABLE applications VALIDATE CONSTRAINT fk_applications_grant;
DO $$
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM pg_constraint
        WHERE conname = 'fk_applications_grant'
          AND conrelid = 'applications'::regclass
    ) THEN
        ALTER TABLE applications
            ADD CONSTRAINT fk_applications_grant
            FOREIGN KEY (grant_id) REFERENCES grants (id) ON DELETE SET NULL NOT VALID;
    END IF;
END $$;
